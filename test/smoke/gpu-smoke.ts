// Runs one compute shader and prints a JSON line; executed under Bun (and Node) by smoke.test.ts.

import { scale } from "../../src/gpu/kernels/copy.ts";
import { acquireGpu } from "../../src/index.ts";

const gpu = await acquireGpu();
const x = gpu.tensor([8], "f32", [1, 2, 3, 4, 5, 6, 7, 8]);
const y = gpu.tensor([8]);
scale(x, y, 3);
const out = Array.from(await y.read());
const deno = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
const runtime = deno
  ? `deno ${deno.version.deno}`
  : "bun" in process.versions
    ? `bun ${process.versions.bun}`
    : `node ${process.versions.node}`;
console.log(JSON.stringify({ runtime, adapter: gpu.info.description, via: gpu.info.runtime, out }));
gpu.destroy();
