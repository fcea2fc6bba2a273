// safetensors reading/writing: exact byte layout, F32/F16/BF16 conversion, chunked streaming,
// sharded indexes, and the errors for missing tensors and corrupt files.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../../src/gpu/tensor.ts";
import { openSafetensors } from "../../src/model/safetensors.ts";
import { f32ToBf16, writeSafetensors, writeShardedSafetensors } from "../../src/model/safetensors-write.ts";
import { normal } from "../helpers/random.ts";

const dir = mkdtempSync(join(tmpdir(), "fulgur-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Builds a safetensors file by hand from a header object and raw data bytes. */
function handMade(name: string, header: Record<string, unknown>, data: Uint8Array): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

function firstMismatch(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const u16bytes = (values: number[]) => new Uint8Array(Uint16Array.from(values).buffer);

describe("writeSafetensors", () => {
  it("produces HF's exact layout: u64 header length, space-padded JSON, dtype-then-name order", async () => {
    const path = join(dir, "layout.safetensors");
    await writeSafetensors(path, {
      b: { dtype: "F16", shape: [1], data: Float32Array.of(1) },
      a: { dtype: "F32", shape: [2], data: Float32Array.of(1, 2) },
      c: { dtype: "BF16", shape: [1], data: Float32Array.of(-2) },
    });
    const bytes = readFileSync(path);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    expect(headerLen % 8).toBe(0);
    const header = bytes.subarray(8, 8 + headerLen).toString("utf8");
    const expected =
      '{"__metadata__":{"format":"pt"},' +
      '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
      '"c":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},' +
      '"b":{"dtype":"F16","shape":[1],"data_offsets":[10,12]}}';
    expect(header.trimEnd()).toBe(expected);
    expect(header.length - expected.length).toBeLessThan(8);
    const data = bytes.subarray(8 + headerLen);
    expect([...data]).toEqual([0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0x00, 0xc0, 0x00, 0x3c]);
  });

  it("rounds to nearest even when narrowing to bf16", () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // halfway, rounds to the even mantissa
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // halfway, rounds up to even
    expect(f32ToBf16(1 + 2 ** -8 + 2 ** -12)).toBe(0x3f81); // above halfway
    expect(f32ToBf16(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(f32ToBf16(Number.NaN) & 0x7fc0).toBe(0x7fc0);
  });

  it("rejects data that does not fill the shape, and non-string metadata", async () => {
    await expect(
      writeSafetensors(join(dir, "bad.safetensors"), { x: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }),
    ).rejects.toThrow(/shape \[2,2\] holds 4 values but data has 3/);
    await expect(
      writeSafetensors(join(dir, "bad.safetensors"), {}, { step: 3 } as unknown as Record<string, string>),
    ).rejects.toThrow(/metadata values must be strings/);
  });
});

describe("openSafetensors", () => {
  it("round-trips F32 bit-exactly, including NaN, ±Inf, -0 and subnormals", async () => {
    const data = normal(1000, 1);
    data.set([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1e-45, 3.4e38], 0);
    const path = join(dir, "f32.safetensors");
    await writeSafetensors(path, { "w.weight": { dtype: "F32", shape: [10, 100], data } }, { format: "pt", note: "x" });
    const st = await openSafetensors(path);
    expect(st.names()).toEqual(["w.weight"]);
    expect(st.info("w.weight")).toEqual({ dtype: "F32", shape: [10, 100] });
    expect(st.metadata()).toEqual({ format: "pt", note: "x" });
    const back = await st.read("w.weight");
    expect(new Uint32Array(back.buffer)).toEqual(new Uint32Array(data.buffer));
    await st.close();
  });

  it("widens hand-encoded F16 and BF16 values exactly", async () => {
    // F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +Inf, 0.333251953125.
    // BF16: 1, -2, 1.5, 3.140625, -Inf, 2^-133 (subnormal).
    const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3555];
    const bf16 = [0x3f80, 0xc000, 0x3fc0, 0x4049, 0xff80, 0x0001];
    const path = handMade(
      "halves.safetensors",
      {
        h: { dtype: "F16", shape: [2, 3], data_offsets: [0, 12] },
        b: { dtype: "BF16", shape: [6], data_offsets: [12, 24] },
      },
      new Uint8Array([...u16bytes(f16), ...u16bytes(bf16)]),
    );
    const st = await openSafetensors(path);
    expect([...(await st.read("h"))]).toEqual([1, -2, 65504, 2 ** -24, Number.POSITIVE_INFINITY, 0.333251953125]);
    expect([...(await st.read("b"))]).toEqual([1, -2, 1.5, 3.140625, Number.NEGATIVE_INFINITY, 2 ** -133]);
    await st.close();
  });

  it("streams tensors larger than one read chunk (16 MiB) for every dtype", async () => {
    const n = 4_500_000; // 18 MB as F32, 9 MB as halves: exercises multi-chunk F32 and the half loop.
    const data = normal(n, 2);
    const path = join(dir, "big.safetensors");
    await writeSafetensors(path, {
      f32: { dtype: "F32", shape: [n], data },
      f16: { dtype: "F16", shape: [n], data },
      bf16: { dtype: "BF16", shape: [n], data },
    });
    const st = await openSafetensors(path);
    const f32 = await st.read("f32");
    // A plain loop: deep-equality on millions of elements is far slower than the I/O under test.
    expect(firstMismatch(new Uint32Array(f32.buffer), new Uint32Array(data.buffer))).toBe(-1);
    const f16 = await st.read("f16");
    const bf16 = await st.read("bf16");
    const bits = new Uint32Array(bf16.buffer);
    for (let i = 0; i < n; i += 997) {
      expect(f16[i]).toBe(f16ToF32(f32ToF16(data[i])));
      expect(bits[i]).toBe((f32ToBf16(data[i]) << 16) >>> 0);
    }
    expect(f16[n - 1]).toBe(f16ToF32(f32ToF16(data[n - 1])));
    await st.close();
  });

  it("reads a sharded checkpoint through its index, from the directory or the index file", async () => {
    const shardDir = mkdtempSync(join(dir, "sharded-"));
    const tensors: Record<string, { dtype: "F32" | "BF16"; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 7; i++)
      tensors[`layer.${i}.weight`] = { dtype: "F32", shape: [3, i + 1], data: normal(3 * (i + 1), i) };
    const files = await writeShardedSafetensors(shardDir, tensors, 3);
    expect(files).toEqual([
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    const index = JSON.parse(readFileSync(join(shardDir, "model.safetensors.index.json"), "utf8"));
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(files));
    expect(index.metadata.total_size).toBe(4 * 3 * (1 + 2 + 3 + 4 + 5 + 6 + 7));
    for (const source of [shardDir, join(shardDir, "model.safetensors.index.json")]) {
      const st = await openSafetensors(source);
      expect(st.names()).toEqual(Object.keys(tensors).sort());
      for (const [name, t] of Object.entries(tensors)) expect(await st.read(name)).toEqual(t.data);
      await st.close();
    }
  });

  it("names the tensor and every file searched when a tensor is missing", async () => {
    const shardDir = mkdtempSync(join(dir, "missing-"));
    await writeShardedSafetensors(
      shardDir,
      {
        a: { dtype: "F32", shape: [1], data: Float32Array.of(1) },
        b: { dtype: "F32", shape: [1], data: Float32Array.of(2) },
      },
      2,
    );
    const st = await openSafetensors(shardDir);
    expect(() => st.info("lm_head.weight")).toThrow(
      'tensor "lm_head.weight" not found (searched model-00001-of-00002.safetensors, model-00002-of-00002.safetensors)',
    );
    await expect(st.read("lm_head.weight")).rejects.toThrow(/lm_head.weight/);
    await st.close();
  });

  it("rejects corrupt files with a message saying what is wrong", async () => {
    const short = join(dir, "short.safetensors");
    writeFileSync(short, Buffer.from([1, 2, 3]));
    await expect(openSafetensors(short)).rejects.toThrow(/too short/);

    const hugeHeader = join(dir, "huge.safetensors");
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    writeFileSync(hugeHeader, b);
    await expect(openSafetensors(hugeHeader)).rejects.toThrow(/header length 1000 is invalid/);

    const outside = handMade(
      "outside.safetensors",
      { x: { dtype: "F32", shape: [4], data_offsets: [0, 16] } },
      new Uint8Array(8),
    );
    await expect(openSafetensors(outside)).rejects.toThrow(/data_offsets \[0, 16\] fall outside the file/);

    const wrongSize = handMade(
      "size.safetensors",
      { x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } },
      new Uint8Array(8),
    );
    await expect(openSafetensors(wrongSize)).rejects.toThrow(/needs 12/);

    const ints = handMade(
      "ints.safetensors",
      { x: { dtype: "I64", shape: [1], data_offsets: [0, 8] } },
      new Uint8Array(8),
    );
    const st = await openSafetensors(ints);
    await expect(st.read("x")).rejects.toThrow(/dtype I64; only F32, F16 and BF16/);
    await st.close();

    await expect(openSafetensors(join(dir, "nope"))).rejects.toThrow(/not found/);
    await expect(openSafetensors(mkdtempSync(join(dir, "empty-")))).rejects.toThrow(/found none/);
  });
});
