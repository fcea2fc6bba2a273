// Kernel variant selection by measurement. A kernel family (e.g. "gemm", "gemv") has several
// variants (tile sizes, vector loads, workgroup memory on/off); which is fastest depends on the
// adapter (lavapipe hates workgroup memory, real GPUs love it) and on the shape. The first time a
// (family, shape class) is tuned on an adapter, every candidate is timed with timeGpu and the
// fastest is remembered: in memory and in `~/.cache/fulgur/autotune-<adapter>.json`
// (directory overridable with FULGUR_CACHE_DIR), so later processes skip the measurement.
//
// Launchers are synchronous (they only record dispatches), so they cannot time anything: on a
// cache miss they use the adapter kind's default and note the class as pending; `tunePending()`
// measures them. The serving engine calls it whenever its scheduler runs dry (src/model/engine.ts;
// on hardware adapters by default, see idleTuningEnabled), so a server or `fulgur train` measures
// the shapes it really runs, once per adapter; benches call it directly. FULGUR_AUTOTUNE=0 turns measuring off entirely (defaults only), which keeps tests
// fast and deterministic (vitest.config.ts sets it for the suite).

import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Gpu } from "./device.ts";
import { timeGpu } from "./timing.ts";

/** One candidate: records its dispatches for the shape being tuned (into scratch tensors). */
export interface TuneCandidate {
  variant: string;
  record: () => void;
}

export interface TuneResult {
  variant: string;
  /** Best-of-repeats milliseconds per candidate, as measured. */
  ms: Record<string, number>;
}

interface CacheEntry extends TuneResult {
  at: string;
}

interface CacheFile {
  version: 1;
  adapter: string;
  choices: Record<string, CacheEntry>;
}

/** A class waiting to be measured: builds its candidates (allocating scratch) and frees them. */
export interface PendingTune {
  family: string;
  shapeClass: string;
  prepare: () => { candidates: TuneCandidate[]; dispose: () => void };
  /** Today's candidate names: a cached entry that did not measure them all is re-measured. */
  variants?: readonly string[];
}

const memory = new WeakMap<Gpu, Map<string, CacheEntry>>();
const pending = new WeakMap<Gpu, Map<string, PendingTune>>();

/** The power of two at or above x: shapes within one share a tuning class. */
export function sizeBucket(x: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, x)));
}

/** False when FULGUR_AUTOTUNE is "0", "off" or "false": launchers then use per-adapter defaults. */
export function autotuneEnabled(): boolean {
  const v = (process.env.FULGUR_AUTOTUNE ?? "").toLowerCase();
  return !(v === "0" || v === "off" || v === "false");
}

/**
 * Whether to measure pending classes in idle time (the serving engine): FULGUR_AUTOTUNE "1"/"on"/
 * "true" always, "0"/"off"/"false" never, and by default only on hardware adapters. A software
 * adapter compiles each candidate pipeline for seconds and its defaults were picked by measuring
 * lavapipe (docs/kernels.md); a GPU compiles in milliseconds and its best tiles vary by vendor.
 */
export function idleTuningEnabled(gpu: Gpu): boolean {
  const v = (process.env.FULGUR_AUTOTUNE ?? "").toLowerCase();
  if (v === "1" || v === "on" || v === "true") return true;
  return autotuneEnabled() && adapterKind(gpu) === "gpu";
}

/** "software" for CPU rasterisers (lavapipe/llvmpipe, SwiftShader, WARP), else "gpu". */
export function adapterKind(gpu: Gpu): "software" | "gpu" {
  const i = gpu.info;
  const text = `${i.architecture} ${i.device} ${i.description}`.toLowerCase();
  return /software|llvmpipe|lavapipe|swiftshader|warp|microsoft basic render/.test(text) ? "software" : "gpu";
}

/** Directory of the on-disk cache: FULGUR_CACHE_DIR, else ~/.cache/fulgur. */
export function cacheDir(): string {
  return process.env.FULGUR_CACHE_DIR || join(homedir(), ".cache", "fulgur");
}

/** The cache file for this adapter; the name is derived from the adapter's description. */
export function cachePath(gpu: Gpu): string {
  const i = gpu.info;
  const name = `${i.vendor}-${i.architecture}-${i.device}-${i.description}-${i.runtime}`
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 160);
  return join(cacheDir(), `autotune-${name || "unknown"}.json`);
}

function key(family: string, shapeClass: string): string {
  return `${family}|${shapeClass}`;
}

function readDisk(gpu: Gpu): Record<string, CacheEntry> {
  try {
    const file = JSON.parse(readFileSync(cachePath(gpu), "utf8")) as CacheFile;
    if (file.version === 1 && file.choices && typeof file.choices === "object") return file.choices;
  } catch {
    // missing or unreadable: start empty (a corrupt cache is rebuilt, never fatal)
  }
  return {};
}

function entries(gpu: Gpu): Map<string, CacheEntry> {
  let map = memory.get(gpu);
  if (!map) {
    map = new Map(Object.entries(readDisk(gpu)));
    memory.set(gpu, map);
  }
  return map;
}

function writeDisk(gpu: Gpu): void {
  const path = cachePath(gpu);
  // Merge with what other processes wrote meanwhile; ours wins on conflicts.
  const choices = { ...readDisk(gpu), ...Object.fromEntries(entries(gpu)) };
  const file: CacheFile = { version: 1, adapter: gpu.info.description, choices };
  mkdirSync(cacheDir(), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(file, null, 1)}\n`);
  renameSync(tmp, path);
}

/**
 * A cached entry is stale when it was measured before some of today's candidates existed (a
 * newer build added variants): it is then re-measured rather than trusted.
 */
function fresh(entry: CacheEntry | undefined, candidates?: readonly string[]): entry is CacheEntry {
  if (!entry) return false;
  return !candidates || candidates.every((c) => c in entry.ms);
}

/**
 * The measured choice for a class on this adapter, if any (memory first, then disk); with
 * `candidates`, only a measurement that covered all of them counts.
 */
export function cachedVariant(
  gpu: Gpu,
  family: string,
  shapeClass: string,
  candidates?: readonly string[],
): string | undefined {
  const entry = entries(gpu).get(key(family, shapeClass));
  return fresh(entry, candidates) ? entry.variant : undefined;
}

/** Forgets every choice for this adapter in memory (the disk file stays). For tests. */
export function clearMemoryCache(gpu: Gpu): void {
  memory.delete(gpu);
  pending.delete(gpu);
}

/**
 * Times each candidate (one warm-up that also compiles the pipeline, then the best of
 * `repeats` runs), records the fastest in memory and on disk, and returns it.
 */
export async function tune(
  gpu: Gpu,
  family: string,
  shapeClass: string,
  candidates: TuneCandidate[],
  repeats = 3,
): Promise<TuneResult> {
  if (candidates.length === 0) throw new Error(`autotune ${family} ${shapeClass}: no candidate variants`);
  const ms: Record<string, number> = {};
  for (const c of candidates) {
    c.record();
    await gpu.sync();
    let best = Number.POSITIVE_INFINITY;
    for (let r = 0; r < repeats; r++) best = Math.min(best, (await timeGpu(gpu, c.record)).ms);
    ms[c.variant] = best;
  }
  let variant = candidates[0].variant;
  for (const c of candidates) if (ms[c.variant] < ms[variant]) variant = c.variant;
  const entry: CacheEntry = { variant, ms, at: new Date().toISOString() };
  entries(gpu).set(key(family, shapeClass), entry);
  pending.get(gpu)?.delete(key(family, shapeClass));
  writeDisk(gpu);
  return { variant, ms };
}

/** Notes a class seen by a launcher without a cached choice (no-op when tuning is off). */
export function notePending(gpu: Gpu, job: PendingTune): void {
  if (!autotuneEnabled()) return;
  let map = pending.get(gpu);
  if (!map) {
    map = new Map();
    pending.set(gpu, map);
  }
  const k = key(job.family, job.shapeClass);
  if (!map.has(k) && !fresh(entries(gpu).get(k), job.variants)) map.set(k, job);
}

/** Classes noted by launchers and not measured yet. */
export function pendingClasses(gpu: Gpu): string[] {
  return [...(pending.get(gpu)?.keys() ?? [])];
}

/**
 * Measures every pending class (each once) and caches the winners; returns what was chosen.
 * `shouldStop` is asked before each class: a caller tuning in idle time (the engine between
 * requests) stops as soon as work arrives, and the classes left stay pending for the next lull.
 */
export async function tunePending(
  gpu: Gpu,
  options: { shouldStop?: () => boolean } = {},
): Promise<Record<string, TuneResult>> {
  const out: Record<string, TuneResult> = {};
  const map = pending.get(gpu);
  if (!map) return out;
  for (const [k, job] of [...map]) {
    if (options.shouldStop?.()) break;
    map.delete(k);
    const { candidates, dispose } = job.prepare();
    try {
      out[k] = await tune(gpu, job.family, job.shapeClass, candidates);
    } finally {
      dispose();
    }
  }
  return out;
}
