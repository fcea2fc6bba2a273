// Plain-TypeScript reference for quant.wgsl: symmetric int8 per row and int4 per group of
// columns, unpacked and scaled in f32.

/** W[r, c] = q[r, c] · scale[r] (one f32 multiply, as the shader does), from the packed words. */
export function refDequantInt8(packed: Uint32Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  const bytes = new Int8Array(packed.buffer, packed.byteOffset, rows * cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(bytes[r * cols + c] * scales[r]);
  }
  return out;
}

/** W[r, c] = q[r, c] · scale[r, c / group], nibble c % 8 of word c / 8, sign-extended. */
export function refDequantInt4(packed: Uint32Array, scales: Float32Array, n: number, group: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const nibble = (packed[i >>> 3] >>> ((i & 7) * 4)) & 0xf;
    const q = nibble >= 8 ? nibble - 16 : nibble;
    out[i] = Math.fround(q * scales[Math.floor(i / group)]);
  }
  return out;
}
