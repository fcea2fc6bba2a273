// Shared benchmark plumbing: one JSON object per line on stdout, so runs can be diffed, piped
// into jq, and compared side by side (ratios in the same run, never absolute thresholds).

export interface BenchRecord {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  [extra: string]: unknown;
}

/** Prints one result line. */
export function emit(record: BenchRecord): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/** Median of repeated async measurements (ms), after `warmup` discarded runs. */
export async function medianMs(run: () => Promise<number>, repeats = 5, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) times.push(await run());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Percentile (0..100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
