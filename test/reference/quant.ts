// Plain-TypeScript reference for quant.wgsl: per-row symmetric int8, unpacked and scaled in f32.

/** W[r, c] = q[r, c] · scale[r] (one f32 multiply, as the shader does), from the packed words. */
export function refDequantInt8(packed: Uint32Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  const bytes = new Int8Array(packed.buffer, packed.byteOffset, rows * cols);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.fround(bytes[r * cols + c] * scales[r]);
  }
  return out;
}
