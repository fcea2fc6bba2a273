// Launchers for copy.wgsl: vec4 copy and scale (bandwidth yardstick and smoke test).

import { grid1d } from "../grid.ts";
import type { Tensor } from "../tensor.ts";

function vec4Count(src: Tensor, dst: Tensor): number {
  if (src.dtype !== "f32" || dst.dtype !== "f32") throw new Error("copy kernels take f32 tensors");
  if (src.size !== dst.size) throw new Error(`copy: sizes differ (${src.size} vs ${dst.size})`);
  if (src.size % 4 !== 0) throw new Error(`copy: size ${src.size} is not a multiple of 4`);
  return src.size / 4;
}

/** dst ← src (f32, size a multiple of 4). */
export function copy(src: Tensor, dst: Tensor): void {
  const n4 = vec4Count(src, dst);
  src.gpu.commands.dispatch({
    shader: "copy",
    entry: "copy_vec4",
    bindings: [src, dst],
    params: { n4, value: 0 },
    workgroups: grid1d(src.gpu, n4, 256),
  });
}

/** dst ← src · value. */
export function scale(src: Tensor, dst: Tensor, value: number): void {
  const n4 = vec4Count(src, dst);
  src.gpu.commands.dispatch({
    shader: "copy",
    entry: "scale_vec4",
    bindings: [src, dst],
    params: { n4, value },
    workgroups: grid1d(src.gpu, n4, 256),
  });
}
