// The checked-in migrations must match src/store/schema.ts: regenerating from the latest
// snapshot yields no statements. Fails when the schema changed without `npx drizzle-kit generate`.
import { readFileSync } from "node:fs";
import { generateSQLiteDrizzleJson, generateSQLiteMigration } from "drizzle-kit/api";
import { describe, expect, it } from "vitest";
import * as schema from "../../src/store/schema.ts";

const migrations = new URL("../../src/store/migrations/", import.meta.url);

describe("store migrations", () => {
  it("are up to date with the schema", async () => {
    const journal = JSON.parse(readFileSync(new URL("meta/_journal.json", migrations), "utf8")) as {
      entries: { idx: number; tag: string }[];
    };
    const last = journal.entries.at(-1);
    expect(last, "at least one migration").toBeDefined();
    const snapshotFile = new URL(`meta/${String(last?.idx).padStart(4, "0")}_snapshot.json`, migrations);
    const snapshot = JSON.parse(readFileSync(snapshotFile, "utf8"));
    const current = await generateSQLiteDrizzleJson(schema as Record<string, unknown>);
    expect(await generateSQLiteMigration(snapshot, current)).toEqual([]);
  });
});
