// Issue 15 item 2: storage faults under a running server. The store lives on a small tmpfs of
// its own (real faults, no injection): filling it up, remounting it read-only, and deleting the
// store file. (A read-only store is refused at start-up with SQLITE_READONLY; revoking write
// permission from a file the server already has open changes nothing, since POSIX checks it at
// open, and a tmpfs with open writers cannot be remounted read-only.) In each case the server stays up, LLM calls that cannot be recorded are answered
// 503 in OpenAI's shape (never 200 with the record dropped), /health says unhealthy and why, and
// recording recovers once the fault is gone. Needs root (mount); skipped elsewhere.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type FulgurServer, startServer } from "../../src/server.ts";
import { openStore } from "../../src/store/libsql.ts";
import { type RunningUpstream, startUpstreamServer } from "../proxy/upstream-server.ts";

function canMount(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), "fulgur-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], { stdio: "ignore" });
    execFileSync("umount", [probe], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const MOUNTABLE = canMount();
let mountPoint: string;
let upstream: RunningUpstream;
let server: FulgurServer;
let client: OpenAI;

async function ask(): Promise<{ status: number; id?: string; error?: { code: string; message: string } }> {
  try {
    const r = await client.chat.completions.create({
      model: "toy",
      messages: [{ role: "user", content: "hello there" }],
      max_tokens: 4,
    });
    return { status: 200, id: r.id };
  } catch (err) {
    const e = err as InstanceType<typeof OpenAI.APIError>;
    return { status: e.status ?? 0, error: e.error as { code: string; message: string } };
  }
}

async function health(): Promise<{ status: number; body: { ok: boolean; recording: { fault: string | null } } }> {
  const res = await fetch(`${server.url}/health`);
  return { status: res.status, body: (await res.json()) as { ok: boolean; recording: { fault: string | null } } };
}

describe.skipIf(!MOUNTABLE)("storage faults on a real filesystem", () => {
  beforeEach(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), "fulgur-faults-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint]);
    mkdirSync(join(mountPoint, "db"));
    upstream = await startUpstreamServer({ model: "toy" });
    server = await startServer({
      upstreamUrl: upstream.baseURL,
      storeUrl: `file:${join(mountPoint, "db", "store.db")}`,
      port: 0,
    });
    client = new OpenAI({ apiKey: "k", baseURL: `${server.url}/v1`, maxRetries: 0 });
  });

  afterEach(async () => {
    await server?.shutdown().catch(() => {});
    await upstream?.close();
    try {
      execFileSync("mount", ["-o", "remount,rw", mountPoint], { stdio: "ignore" });
    } catch {}
    execFileSync("umount", ["-l", mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it("disk full: 503 and unhealthy while full, recovers when space is back", async () => {
    const before = await ask();
    expect(before.status).toBe(200);
    const filler = join(mountPoint, "filler");
    // Fill the filesystem (tmpfs refuses the write once full; keep what fitted).
    try {
      writeFileSync(filler, Buffer.alloc(8 * 1024 * 1024, 1));
    } catch {}
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask()));
    const failed = answers.filter((a) => a.status === 503);
    expect(failed.length).toBeGreaterThan(0);
    for (const a of failed) expect(a.error?.code).toBe("recording_failed");
    // Every 200 is a stored call, even with the disk full.
    const okIds = answers.filter((a) => a.status === 200).map((a) => a.id);
    const h = await health();
    expect(h.status).toBe(503);
    expect(h.body.ok).toBe(false);
    expect(h.body.recording.fault).toMatch(/full|SQLITE|disk|space/i);
    unlinkSync(filler);
    const after = await ask();
    expect(after.status).toBe(200);
    expect((await health()).status).toBe(200);
    await server.shutdown();
    const store = await openStore(`file:${join(mountPoint, "db", "store.db")}`);
    const stored = new Set(
      (await store.getTransitions({ unattributed: true })).map((t) => (t.metadata as { callId: string }).callId),
    );
    for (const id of [before.id, ...okIds, after.id]) expect(stored.has(id!)).toBe(true);
    await store.close();
  });

  it("store file deleted under the server: detected, 503, /health names it", async () => {
    expect((await ask()).status).toBe(200);
    unlinkSync(join(mountPoint, "db", "store.db"));
    const denied = await ask();
    expect(denied.status).toBe(503);
    expect(denied.error?.message).toMatch(/deleted/);
    const h = await health();
    expect(h.status).toBe(503);
    expect(h.body.recording.fault).toMatch(/store\.db was deleted/);
    // Still serving everything else.
    expect((await fetch(`${server.url}/v1/models`)).status).toBe(200);
  });
});
