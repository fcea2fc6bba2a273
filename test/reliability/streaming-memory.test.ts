// The streaming path must not keep anything of a finished request: after a few hundred streamed
// completions through the real server stack (Hono on Node's HTTP server, the GPU engine with a
// tiny model), the JS heap after a full GC is where it was. Before the fix each streamed call
// pinned its Context, request, response and generation state (~35 KB per call).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let dir: string;
let server: FulgurServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fulgur-stream-mem-"));
  await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 32, seed: 3 });
  server = await startServer({ modelDir: join(dir, "tiny"), storeUrl: ":memory:", port: 0, maxSeqLen: 128 });
});

afterAll(async () => {
  await server?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function streamCalls(total: number, clients = 8): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next++ < total) {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "tiny", prompt: "abc", max_tokens: 6, stream: true, temperature: 0 }),
        });
        const text = await res.text();
        expect(text.endsWith("data: [DONE]\n\n")).toBe(true);
      }
    }),
  );
}

async function settledHeap(): Promise<number> {
  await server.recorder.flush();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

it("streamed calls leave no per-request state on the heap", async () => {
  await streamCalls(100);
  // Two rounds, the smaller growth counts: a leak grows the heap in every round, while noise
  // (lazily compiled code, caches filling up while other test files load the machine) does not.
  const calls = 300;
  const perCall: number[] = [];
  for (let round = 0; round < 2; round++) {
    const before = await settledHeap();
    await streamCalls(calls);
    perCall.push(((await settledHeap()) - before) / calls);
  }
  // Leaking requests cost ~35,000 bytes each; allocator noise is well under 5,000 per call.
  expect(Math.min(...perCall), `heap growth per call in each round: ${perCall}`).toBeLessThan(5_000);
});
