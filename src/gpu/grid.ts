// Workgroup grids: WebGPU caps each dimension at maxComputeWorkgroupsPerDimension (65535 by
// default), so long 1-D launches fold into 2-D. Shaders recover the linear index as
// `gid.x + gid.y * nwg.x * WORKGROUP_SIZE`.

import type { Gpu } from "./device.ts";

/** Workgroups for `invocations` threads in groups of `size`, folded into x/y under the cap. */
export function grid1d(gpu: Gpu, invocations: number, size: number): [number, number] {
  const groups = Math.ceil(invocations / size);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

export function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}
