// The GPU runtime on the real device (lavapipe in CI): acquiring, tensors, pool, batching,
// params, sharding, timing, and the errors users see.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseEntries, parseParams, renderShaderBundle } from "../../scripts/gen-shaders.ts";
import {
  acquireGpu,
  f16ToF32,
  f32ToF16,
  grid1d,
  readAll,
  renderShader,
  type ShaderName,
  ShardedMatrix,
  sizeClass,
  timeGpu,
} from "../../src/gpu/index.ts";
import { copy, scale } from "../../src/gpu/kernels/copy.ts";
import { acquireGpu as acquireFromRoot } from "../../src/index.ts";
import { expectClose } from "../helpers/compare.ts";
import { useGpu } from "../helpers/gpu.ts";
import { uniform } from "../helpers/random.ts";

const gpu = useGpu();

describe("acquireGpu", () => {
  it("opens a device with the adapter's limits and reports features", () => {
    const g = gpu();
    expect(acquireFromRoot).toBe(acquireGpu);
    expect(g.info.runtime).toBe("dawn-node");
    expect(g.limits.maxStorageBufferBindingSize).toBe(g.adapter.limits.maxStorageBufferBindingSize);
    expect(g.limits.maxComputeWorkgroupStorageSize).toBe(g.adapter.limits.maxComputeWorkgroupStorageSize);
    for (const [key, name] of [
      ["shaderF16", "shader-f16"],
      ["subgroups", "subgroups"],
      ["timestampQuery", "timestamp-query"],
    ] as const) {
      expect(g.features[key]).toBe(g.adapter.features.has(name));
      expect(g.device.features.has(name)).toBe(g.features[key]);
    }
  });

  it("can leave optional features off to exercise fallbacks", async () => {
    const plain = await acquireGpu({ disableFeatures: ["shaderF16", "subgroups", "timestampQuery"] });
    try {
      expect(plain.features).toEqual({ shaderF16: false, subgroups: false, timestampQuery: false });
      const t = plain.tensor([8], "f32", [1, 2, 3, 4, 5, 6, 7, 8]);
      const u = plain.tensor([8]);
      scale(t, u, 2);
      expect(Array.from(await u.read())).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
      const { ms, source } = await timeGpu(plain, () => copy(t, u));
      expect(source).toBe("wall");
      expect(ms).toBeGreaterThanOrEqual(0);
    } finally {
      plain.destroy();
    }
  });

  it("destroy() is idempotent and later use fails clearly", async () => {
    const g = await acquireGpu();
    g.destroy();
    g.destroy();
    expect(g.isDestroyed).toBe(true);
    expect(() => g.tensor([4])).toThrow(/after destroy/);
  });

  it("devices opened together share Dawn's instance; destroying one leaves the other working", async () => {
    const [a, b] = await Promise.all([acquireGpu(), acquireGpu()]);
    try {
      const x = a.tensor([4], "f32", [1, 2, 3, 4]);
      const y = a.tensor([4]);
      scale(x, y, 3); // recorded on a, not yet submitted
      b.destroy();
      expect(Array.from(await y.read())).toEqual([3, 6, 9, 12]);
      const c = await acquireGpu(); // a fresh device after a destroyed one
      try {
        const z = c.tensor([2], "f32", [5, 6]);
        expect(Array.from(await z.read())).toEqual([5, 6]);
      } finally {
        c.destroy();
      }
    } finally {
      a.destroy();
      b.destroy();
    }
  });
});

describe("tensors", () => {
  it("round-trips f32, u32 and i32 data", async () => {
    const g = gpu();
    const data = uniform(1031, 1);
    const t = g.tensor([1031], "f32", data);
    expect(Array.from(await t.read())).toEqual(Array.from(data));
    const u = g.tensor([5], "u32", [0, 1, 2 ** 31, 7, 0xffffffff]);
    expect(Array.from(await u.readInts())).toEqual([0, 1, 2 ** 31, 7, 0xffffffff]);
    const s = g.tensor([3], "i32", [-5, 0, 5]);
    expect(Array.from(await s.readInts())).toEqual([-5, 0, 5]);
    for (const x of [t, u, s]) x.dispose();
  });

  it("reads many tensors of mixed dtypes in one round trip", async () => {
    const g = gpu();
    const a = g.tensor([5], "f32", [1.5, 2, 3, 4, 5]);
    const b = g.tensor([3], "u32", [7, 0xffffffff, 9]);
    const c = g.tensor([3], "f16", [0.5, -2, 4]);
    const d = g.tensor([2], "i32", [-3, 4]);
    const before = g.commands.dispatchCount;
    const [ra, rb, rc, rd] = await readAll([a, b, c, d]);
    expect(Array.from(ra)).toEqual([1.5, 2, 3, 4, 5]);
    expect(rb).toBeInstanceOf(Uint32Array);
    expect(Array.from(rb)).toEqual([7, 0xffffffff, 9]);
    expect(Array.from(rc)).toEqual([0.5, -2, 4]);
    expect(Array.from(rd)).toEqual([-3, 4]);
    expect(g.commands.dispatchCount).toBe(before);
    expect(await readAll([])).toEqual([]);
  });

  it("stores f16 halves and widens them on read (odd lengths too)", async () => {
    const g = gpu();
    const values = [0, 1, -2, 0.5, 65504, 1e-4, 3.140625];
    const t = g.tensor([7], "f16", values);
    const back = await t.read();
    for (let i = 0; i < values.length; i++) expect(back[i]).toBeCloseTo(f16ToF32(f32ToF16(values[i])), 10);
    expect(back[4]).toBe(65504);
    t.dispose();
  });

  it("converts f16 exactly on representable values and rounds to nearest even", () => {
    for (let h = 0; h < 0x7c00; h += 37) expect(f32ToF16(f16ToF32(h))).toBe(h);
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16(1e6)).toBe(0x7c00);
    expect(Number.isNaN(f16ToF32(f32ToF16(Number.NaN)))).toBe(true);
  });

  it("zeros, partial writes, views and reshapes share memory", async () => {
    const g = gpu();
    const t = g.zeros([2, 128]);
    expect(Array.from(await t.read()).every((v) => v === 0)).toBe(true);
    t.write([1, 2, 3], 64 + 1);
    const row1 = t.view([128], 128);
    row1.write(new Float32Array(128).fill(9));
    const all = await t.read();
    expect(Array.from(all.subarray(64, 68))).toEqual([0, 1, 2, 3]);
    expect(all[128]).toBe(9);
    expect(Array.from(await t.reshape([256]).read())).toEqual(Array.from(all));
    expect(() => t.view([200], 128)).toThrow(/exceeds/);
    expect(() => t.reshape([3, 100])).toThrow(/reshape/);
    expect(() => t.write(new Float32Array(300))).toThrow(/exceeds/);
    row1.dispose();
    t.dispose();
    expect(() => t.buffer).toThrow(/dispose/);
  });

  it("keeps program order between uploads and recorded dispatches", async () => {
    const g = gpu();
    const a = g.tensor([4], "f32", [1, 1, 1, 1]);
    const b = g.tensor([4]);
    copy(a, b); // recorded, not yet submitted
    a.write([5, 5, 5, 5]); // must not overtake the copy above
    expect(Array.from(await b.read())).toEqual([1, 1, 1, 1]);
  });
});

describe("buffer pool", () => {
  it("rounds to size classes and reuses freed buffers", () => {
    const g = gpu();
    expect(sizeClass(1)).toBe(256);
    expect(sizeClass(257)).toBe(512);
    expect(sizeClass(100_000)).toBe(106496);
    const a = g.tensor([1000]);
    const buf = a.buffer;
    a.dispose();
    const b = g.tensor([990]);
    expect(b.buffer).toBe(buf);
    const before = g.pool.stats().liveBuffers;
    b.dispose();
    expect(g.pool.stats().liveBuffers).toBe(before - 1);
    expect(g.pool.stats().peakBytes).toBeGreaterThan(0);
  });

  it("trim() submits recorded work before destroying the buffers it freed", async () => {
    const g = gpu();
    const src = g.tensor([64], "f32", uniform(64, 3));
    const tmp = g.tensor([64]);
    const out = g.tensor([64]);
    copy(src, tmp);
    copy(tmp, out); // both recorded, not yet submitted
    tmp.dispose(); // back to the pool while the unsubmitted batch still binds it
    g.pool.trim();
    expect(g.pool.stats().freeBytes).toBe(0);
    expect(Array.from(await out.read())).toEqual(Array.from(await src.read()));
    await g.sync(); // no "used in submit while destroyed" validation error
  });
});

describe("command batching and kernels", () => {
  it("records many dispatches into one submit with per-dispatch params", async () => {
    const g = gpu();
    const x = g.tensor([1024], "f32", uniform(1024, 2));
    const outs = Array.from({ length: 50 }, () => g.tensor([1024]));
    for (let i = 0; i < outs.length; i++) scale(x, outs[i], i);
    const expected = await x.read();
    for (const i of [0, 1, 17, 49]) {
      const got = await outs[i].read();
      expectClose(
        got,
        expected.map((v) => v * i),
        { atol: 0, rtol: 1e-7 },
        `scale ${i}`,
      );
    }
    for (const o of outs) o.dispose();
  });

  it("folds long 1-D launches into a 2-D grid", async () => {
    const g = gpu();
    expect(grid1d(g, 100, 256)).toEqual([1, 1]);
    const [gx, gy] = grid1d(g, 70000 * 256, 256);
    expect(gx).toBeLessThanOrEqual(g.limits.maxComputeWorkgroupsPerDimension);
    expect(gx * gy).toBeGreaterThanOrEqual(70000);
    // A launch folded over y must cover every element: 6 workgroups as [3, 2].
    const n = 6 * 256 * 4;
    const a = g.tensor([n], "f32", uniform(n, 5));
    const b = g.zeros([n]);
    g.commands.dispatch({
      shader: "copy",
      entry: "copy_vec4",
      bindings: [a, b],
      params: { n4: n / 4, value: 0 },
      workgroups: [3, 2],
    });
    expect(Array.from(await b.read())).toEqual(Array.from(await a.read()));
    a.dispose();
    b.dispose();
  });

  it("refuses bindings over the adapter's limit with a pointer to sharding", () => {
    const g = gpu();
    const big = g.tensor([g.maxBindingSize / 4 + 4]);
    expect(() => copy(big, big)).toThrow(/maxStorageBufferBindingSize.*ShardedMatrix/);
    big.dispose();
  });

  it("caches pipelines by shader, entry and defines", () => {
    const g = gpu();
    const a = g.tensor([4]);
    const b = g.tensor([4]);
    copy(a, b);
    scale(a, b, 1);
    const n = g.pipelines.size;
    const p = g.pipelines.get({ shader: "copy", entry: "copy_vec4" });
    for (let i = 0; i < 5; i++) {
      copy(b, a);
      scale(b, a, i);
    }
    expect(g.pipelines.size).toBe(n);
    expect(g.pipelines.get({ shader: "copy", entry: "copy_vec4" })).toBe(p);
  });

  it("surfaces WebGPU validation errors on the next sync or read", async () => {
    const g = gpu();
    const a = g.tensor([4]);
    copy(a, a.reshape([4])); // the same buffer bound read-only and read-write
    await expect(g.sync()).rejects.toThrow(/WebGPU error: .*writable usage/);
    await g.sync(); // reported once
  });

  it("reports unknown shaders, missing defines and bad launches", async () => {
    const g = gpu();
    expect(() => renderShader("nope" as ShaderName)).toThrow(/unknown shader 'nope'/);
    const a = g.tensor([4]);
    expect(() =>
      g.commands.dispatch({
        shader: "copy",
        entry: "copy_vec4",
        bindings: [a, a],
        params: { n4: 1, value: 0 },
        workgroups: [1e6],
      }),
    ).toThrow(/exceed/);
    const b = g.tensor([4]);
    const launch = (params: unknown) => () =>
      g.commands.dispatch({
        shader: "copy",
        entry: "copy_vec4",
        bindings: [a, b],
        params: params as { n4: number; value: number },
        workgroups: [1],
      });
    expect(launch({ n4: -1, value: 0 })).toThrow(/u32 param 'n4' out of range: -1/);
    expect(launch({ n4: 1.5, value: 0 })).toThrow(/u32 param 'n4' out of range/);
    expect(launch({ n4: 1 })).toThrow(/param 'value' \(f32\) is missing/);
    expect(launch({ n4: 1, value: 0, n: 1 })).toThrow(/unknown param 'n' \(struct Params has n4, value\)/);
    expect(() => copy(a, g.tensor([8]))).toThrow(/sizes differ/);
    await g.sync();
  });

  it("packs named params in the WGSL struct's order and types", async () => {
    const g = gpu();
    // scale_vec4 reads p.value as f32: a named f32 field must arrive as a float, not bits of a u32.
    const x = g.tensor([8], "f32", [1, 2, 3, 4, 5, 6, 7, 8]);
    const y = g.tensor([8]);
    g.commands.dispatch({
      shader: "copy",
      entry: "scale_vec4",
      bindings: [x, y],
      params: { value: -0.5, n4: 2 },
      workgroups: [1],
    });
    expect(Array.from(await y.read())).toEqual([-0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4]);
  });

  it("keeps later validation errors visible after a pipeline fails before compiling", async () => {
    // Regression: PipelineCache.get pushed a validation error scope and then threw (missing
    // define, shader-f16 absent) before popping it; the leaked scope swallowed every later
    // validation error, so sync() stayed silent about a real misuse.
    const g = await acquireGpu({ disableFeatures: ["shaderF16"] });
    try {
      expect(() => g.pipelines.get({ shader: "logprobs", entry: "partials" })).toThrow(/needs define/);
      const f16 = { TM: 4, TN4: 1, TRANS_A: false, TRANS_B: false, B_TYPE: "f16", ENABLE_F16: "enable f16;" };
      expect(() => g.pipelines.get({ shader: "matmul", entry: "matmul_reg1", defines: f16 })).toThrow(
        /needs shader-f16/,
      );
      const a = g.tensor([4]);
      copy(a, a.reshape([4])); // the same buffer bound read-only and read-write
      await expect(g.sync()).rejects.toThrow(/WebGPU error: .*writable usage/);
    } finally {
      g.destroy();
    }
  });

  it("times GPU work with timestamp queries where available", async () => {
    const g = gpu();
    const a = g.tensor([1 << 20]);
    const b = g.tensor([1 << 20]);
    const { ms, source } = await timeGpu(g, () => copy(a, b));
    expect(source).toBe(g.features.timestampQuery ? "timestamp" : "wall");
    expect(ms).toBeGreaterThan(0);
  });
});

describe("sharded matrices", () => {
  it("splits matrices over the binding limit into row blocks and reads them back", async () => {
    const small = await acquireGpu({ maxBindingSize: 64 * 1024 });
    try {
      const rows = 300;
      const cols = 129;
      const data = uniform(rows * cols, 3);
      const m = ShardedMatrix.upload(small, rows, cols, data);
      // 127 rows of 516 bytes fit 64 KiB; shards are cut at multiples of 64 rows.
      expect(m.shards.map((s) => s.rowStart)).toEqual([0, 64, 128, 192, 256]);
      expect(m.shards.map((s) => s.rows)).toEqual([64, 64, 64, 64, 44]);
      for (const s of m.shards) expect(s.tensor.byteLength).toBeLessThanOrEqual(64 * 1024);
      expect(Array.from(await m.read())).toEqual(Array.from(data));
      m.dispose();
    } finally {
      small.destroy();
    }
  });
});

describe("shader bundle", () => {
  it("parses each shader's Params struct and entry points", () => {
    const src = "struct Params { n: u32, // count\n  alpha: f32, k: i32 }\n@compute @workgroup_size(64)\nfn go() {}";
    expect(parseParams("t", src)).toEqual([
      { name: "n", type: "u32" },
      { name: "alpha", type: "f32" },
      { name: "k", type: "i32" },
    ]);
    expect(parseEntries(src)).toEqual(["go"]);
    expect(parseParams("t", "fn f() {}")).toEqual([]);
    // A vec4 field has 16-byte alignment the flat packer would get wrong: refused at generation.
    expect(() => parseParams("t", "struct Params { n: u32, v: vec4<f32> }")).toThrow(/'v: vec4<f32>'/);
  });

  it("src/gpu/shaders.gen.ts is up to date (run `npm run gen:shaders`)", () => {
    const onDisk = readFileSync(new URL("../../src/gpu/shaders.gen.ts", import.meta.url), "utf8");
    expect(onDisk).toBe(renderShaderBundle());
  });
});
