// Shared setup for runner tests: a real Fulgur server (tiny random model on the GPU, temp-file
// store, port 0) and small helpers to wait for store state.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

export const MODEL = "tiny";

export interface TestServer {
  server: FulgurServer;
  dir: string;
  close(): Promise<void>;
}

/** Starts a server on a fresh tiny model and temp store; `close()` removes everything. */
export async function startTestServer(prefix: string, options: { apiKey?: string } = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), `fulgur-${prefix}-`));
  await writeTinyModel(join(dir, MODEL), { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48, seed: 4 });
  const server = await startServer({
    modelDir: join(dir, MODEL),
    storeUrl: `file:${join(dir, "store.db")}`,
    port: 0,
    maxSeqLen: 512,
    apiKey: options.apiKey,
  });
  return {
    server,
    dir,
    async close() {
      await server.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws with `what`). */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}
