// Running the shared store for real, as docs/store.md says to: the key pair and tokens from
// scripts/sqld-auth.mjs with sqld started on --auth-jwt-key-file, a live backup with
// scripts/store-backup.mjs while writers carry on, and a cold copy of a stopped server's data
// directory served by a new sqld.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openStore, type Store } from "../../src/store/index.ts";
import { type SqldServer, startSqld } from "../helpers/sqld.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "fulgur-sqld-ops-"));
const servers: SqldServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

function script(name: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", name), ...args], { cwd: ROOT, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr };
}

async function claimedAttempt(store: Store, input: number): Promise<string> {
  await store.enqueueRollout({ input });
  return (await store.claimRollout({ workerId: "ops" }))!.attempt.id;
}

describe("running sqld for real (docs/store.md)", () => {
  it("keygen and token: sqld on --auth-jwt-key-file lets the token in and nobody else", async () => {
    const keys = join(dir, "keys");
    expect(script("sqld-auth.mjs", "keygen", keys).status).toBe(0);
    expect(statSync(join(keys, "sqld-jwt-private.pem")).mode & 0o777).toBe(0o600);
    const again = script("sqld-auth.mjs", "keygen", keys);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already holds a key/);

    const sqld = await startSqld({ args: ["--auth-jwt-key-file", join(keys, "sqld-jwt-public.pem")] });
    servers.push(sqld);
    const token = script("sqld-auth.mjs", "token", keys);
    expect(token.status).toBe(0);
    const store = await openStore(sqld.url, { authToken: token.stdout });
    expect((await store.enqueueRollout({ input: "ok" })).status).toBe("queuing");
    await store.close();

    const expiring = script("sqld-auth.mjs", "token", keys, "--days", "1");
    const claims = JSON.parse(Buffer.from(expiring.stdout.split(".")[1], "base64url").toString());
    expect(claims.exp - claims.iat).toBe(86_400);
    const shortLived = await openStore(sqld.url, { authToken: expiring.stdout });
    expect(await shortLived.listRollouts()).toHaveLength(1);
    await shortLived.close();

    await expect(openStore(sqld.url, { authToken: "" })).rejects.toThrow(/cannot open the store.*401/);
    const otherKeys = join(dir, "other-keys");
    script("sqld-auth.mjs", "keygen", otherKeys);
    const foreign = script("sqld-auth.mjs", "token", otherKeys).stdout;
    await expect(openStore(sqld.url, { authToken: foreign })).rejects.toThrow(/cannot open the store/);
  });

  it("backs up a running server to a store file while writers carry on, and a stopped one by copying", async () => {
    const sqld = await startSqld();
    servers.push(sqld);
    const store = await openStore(sqld.url);
    const attemptId = await claimedAttempt(store, 1);
    const before = await store.addTransitions([{ attemptId, promptIds: [1, 2, 3], responseIds: [4], messages: [] }]);
    // A writer keeps going while the backup is taken.
    let writing = true;
    const written: string[] = [];
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        const [receipt] = await store.addTransitions([{ attemptId, promptIds: [n], responseIds: [n], messages: [] }]);
        written.push(receipt.id);
      }
    })();
    await new Promise((done) => setTimeout(done, 100));
    const live = join(dir, "live-backup.db");
    const backup = script("store-backup.mjs", sqld.dbPath, live);
    expect(backup.status, backup.stderr).toBe(0);
    await new Promise((done) => setTimeout(done, 100));
    writing = false;
    await writer;
    expect(script("store-backup.mjs", sqld.dbPath, live).stderr).toMatch(/exists/);

    // The copy is a store file: a consistent prefix of what was written, the first record included.
    const copy = await openStore(`file:${live}`);
    const copied = (await copy.getTransitions({ attemptId })).map((t) => t.id);
    expect(copied[0]).toBe(before[0].id);
    expect(copied.length).toBeGreaterThan(1); // taken while the writer ran
    expect(copied.slice(1)).toEqual(written.slice(0, copied.length - 1));
    expect((await copy.listRollouts())[0]).toMatchObject({ input: 1, status: "running" });
    await copy.close();
    // The server served on, and holds everything.
    expect((await store.getTransitions({ attemptId })).length).toBe(1 + written.length);

    // Cold: stop sqld, copy its directory, serve the copy from a new sqld.
    await sqld.stop();
    const cold = join(dir, "cold.sqld");
    cpSync(sqld.dbPath, cold, { recursive: true });
    const restored = await startSqld({ dbPath: cold });
    servers.push(restored);
    const fromCopy = await openStore(restored.url);
    expect((await fromCopy.getTransitions({ attemptId })).length).toBe(1 + written.length);
    await fromCopy.close();
    await store.close();
  });
});
