// Issue 15 item 2: storage faults under a running server. The store lives on a filesystem of its
// own (real faults, no injection): a small tmpfs that is filled up or has the store file deleted,
// and an ext4 image on a loop device whose filesystem turns read-only under the server (the
// kernel's errors=remount-ro, triggered through ext4's trigger_fs_error: what a failing disk
// does). In each case the server stays up, LLM calls that cannot be recorded are answered 503 in
// OpenAI's shape (never 200 with the record dropped), /health says unhealthy and why, and
// recording recovers once the fault is gone (where it can go). A store that is read-only before
// the server starts (a write-protected file, a read-only mount) is refused at start with an
// error that says so; SQLite would open it read-only and fail every write. Needs root (mount,
// loop devices, a second user); each part is skipped where that is missing.

import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
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

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Creates a store with one rollout in a separate process: a store closed in this process keeps
 * its file open until garbage collection, and a filesystem with open writers cannot be remounted
 * read-only.
 */
function makeStoreElsewhere(file: string): void {
  const script = `import(${JSON.stringify(join(root, "src/store/libsql.ts"))}).then(async (m) => {
    const s = await m.openStore(${JSON.stringify(`file:${file}`)});
    await s.enqueueRollout({ input: 1 });
    await s.close();
  })`;
  execFileSync(process.execPath, ["--import", "tsx", "-e", script], { cwd: root, stdio: "ignore" });
}

/** Runs `fulgur serve` in its own process (as `uid` when given) until it exits or prints its URL. */
function serveProcess(
  args: string[],
  uid?: number,
): Promise<{ code: number | null; output: string; url: string | null; stop(): void }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(root, "src/server.ts"), "--port", "0", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  let output = "";
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const onData = (d: Buffer) => {
      output += d;
      const m = output.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ code: null, output, url: m[1], stop: () => child.kill("SIGKILL") });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output, url: null, stop: () => {} });
    });
  });
}

describe.skipIf(!MOUNTABLE)("a store that is read-only before the server starts", () => {
  let dir: string;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "fulgur-ro-"));
    upstream = await startUpstreamServer({ model: "toy" });
  });
  afterEach(async () => {
    await upstream?.close();
    try {
      execFileSync("umount", ["-l", join(dir, "mnt")], { stdio: "ignore" });
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  });

  it("on a read-only filesystem: refused at start, saying so", async () => {
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]);
    makeStoreElsewhere(join(mnt, "store.db"));
    execFileSync("mount", ["-o", "remount,ro", mnt]);
    await expect(
      startServer({ upstreamUrl: upstream.baseURL, storeUrl: `file:${join(mnt, "store.db")}`, port: 0 }),
    ).rejects.toThrow(/store file .*store\.db is on a read-only filesystem \(EROFS\)/);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "a write-protected file, server not root: refused at start instead of answering every call 503",
    async () => {
      // Root writes through any permission bits, so the server runs as nobody here.
      const nobody = 65534;
      chmodSync(dir, 0o755);
      mkdirSync(join(dir, "db"));
      chownSync(join(dir, "db"), nobody, nobody);
      const file = join(dir, "db", "store.db");
      makeStoreElsewhere(file);
      chownSync(file, nobody, nobody);
      chmodSync(file, 0o444);
      const run = await serveProcess(["--upstream", upstream.baseURL, "--store", `file:${file}`], nobody);
      run.stop();
      expect(run.url, run.output).toBeNull();
      expect(run.code).toBe(1);
      expect(run.output).toMatch(/store file .*store\.db is not writable by this process \(EACCES\)/);
    },
    90_000,
  );
});

/** An ext4 image mounted on a loop device with errors=remount-ro, or null where that cannot be done. */
function mountExt4(dir: string): { mnt: string; device: string } | null {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return null;
  const image = join(dir, "fs.img");
  const mnt = join(dir, "mnt");
  mkdirSync(mnt);
  try {
    execFileSync("truncate", ["-s", "32M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", image], { stdio: "ignore" });
    execFileSync("mount", ["-o", "loop,errors=remount-ro", image, mnt], { stdio: "ignore" });
  } catch {
    return null;
  }
  const device = basename(execFileSync("findmnt", ["-n", "-o", "SOURCE", mnt], { encoding: "utf8" }).trim());
  if (!existsSync(`/sys/fs/ext4/${device}/trigger_fs_error`)) {
    execFileSync("umount", [mnt]);
    return null;
  }
  return { mnt, device };
}

function mountOptions(mnt: string): string {
  const line = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .find((l) => l.split(" ")[1] === mnt);
  return line?.split(" ")[3] ?? "";
}

const EXT4_PROBE = (() => {
  if (!MOUNTABLE) return false;
  const probe = mkdtempSync(join(tmpdir(), "fulgur-ext4-probe-"));
  try {
    const fs = mountExt4(probe);
    if (fs) execFileSync("umount", [fs.mnt]);
    return fs !== null;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();

describe.skipIf(!EXT4_PROBE)("the store's filesystem turns read-only under the server", () => {
  let dir: string;
  let fs: { mnt: string; device: string };
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "fulgur-ext4-"));
    const mounted = mountExt4(dir);
    if (!mounted) throw new Error("could not mount the ext4 image");
    fs = mounted;
    upstream = await startUpstreamServer({ model: "toy" });
    server = await startServer({
      upstreamUrl: upstream.baseURL,
      storeUrl: `file:${join(fs.mnt, "store.db")}`,
      port: 0,
    });
    client = new OpenAI({ apiKey: "k", baseURL: `${server.url}/v1`, maxRetries: 0 });
  });
  afterEach(async () => {
    await server?.shutdown().catch(() => {});
    await upstream?.close();
    try {
      execFileSync("umount", ["-l", fs.mnt], { stdio: "ignore" });
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  });

  it("stays up, answers 503 for calls it cannot record, and /health says why", async () => {
    expect((await ask()).status).toBe(200);
    // What the kernel does when the disk under an ext4 filesystem fails: abort the journal and
    // remount read-only, with the server's files open for writing.
    writeFileSync(`/sys/fs/ext4/${fs.device}/trigger_fs_error`, "fulgur test");
    for (let i = 0; i < 100 && !/\bro\b|emergency_ro/.test(mountOptions(fs.mnt)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(mountOptions(fs.mnt)).toMatch(/\bro\b|emergency_ro/);
    const answers = await Promise.all(Array.from({ length: 8 }, () => ask()));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(503));
    for (const a of answers) expect(a.error?.code).toBe("recording_failed");
    // A streamed call cannot take back what it sent: it ends with an error event, never [DONE].
    const streamed = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "toy",
        messages: [{ role: "user", content: "hello" }],
        max_tokens: 4,
        stream: true,
      }),
    });
    const events = await streamed.text();
    expect(events).not.toContain("[DONE]");
    expect(events).toMatch(/"code":"recording_failed"/);
    const h = await health();
    expect(h.status).toBe(503);
    expect(h.body.ok).toBe(false);
    expect(h.body.recording.fault).toMatch(/SQLITE|read-only|I\/O/i);
    // The store API and the sweeper (it runs every second) fail without taking the process down.
    const enqueue = await fetch(`${server.url}/api/v1/rollouts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: 1 }),
    });
    expect(enqueue.status).toBeGreaterThanOrEqual(500);
    expect((await enqueue.json()) as object).toHaveProperty("error");
    await new Promise((r) => setTimeout(r, 1500));
    expect((await fetch(`${server.url}/v1/models`)).status).toBe(200);
    expect((await ask()).status).toBe(503);
  });
});
