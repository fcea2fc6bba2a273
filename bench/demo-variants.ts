// Issue 17's LightningRL options on the built-in demo, side by side: the same seeds run once per
// variant in one process (each run its own server and store), one JSON line per (variant, seed)
// with held-out accuracy before and after and the wall time, then one summary line per variant
// with its mean gain and time relative to the first variant (the baseline).
//   npx tsx bench/demo-variants.ts [--seeds 2 | seeds…] [--steps N]
//     [--variant name=JSON …]   (default: baseline, aggregate, rollout-norm, async)
// A variant's JSON is merged into the demo's LightningRL options (src/trainer/config.ts).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEMO_DEFAULTS, type DemoOptions, runDemo } from "../src/demo/demo.ts";
import type { AlgorithmConfig } from "../src/trainer/config.ts";
import { emit } from "./lib.ts";

const DEFAULT_VARIANTS: Record<string, AlgorithmConfig> = {
  baseline: {},
  aggregate: { trajectory: "aggregate" },
  "rollout-norm": { lossNormalization: "rollout" },
  async: { async: { maxStaleness: 1 } },
};

const { values, positionals } = parseArgs({
  options: {
    seeds: { type: "string", default: "2" },
    steps: { type: "string" },
    variant: { type: "string", multiple: true },
  },
  allowPositionals: true,
});
const seeds = positionals.length
  ? positionals.map(Number)
  : Array.from({ length: Number(values.seeds) }, (_, i) => i + 1);
const variants: [string, AlgorithmConfig][] = values.variant?.length
  ? values.variant.map((v) => {
      const at = v.indexOf("=");
      if (at < 1) throw new Error(`--variant wants name=JSON, got '${v}'`);
      return [v.slice(0, at), JSON.parse(v.slice(at + 1)) as AlgorithmConfig];
    })
  : Object.entries(DEFAULT_VARIANTS);
const overrides: Partial<DemoOptions> = {};
if (values.steps !== undefined) overrides.steps = Number(values.steps);
const out = mkdtempSync(join(tmpdir(), "fulgur-bench-demo-variants-"));
const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
const summary = new Map<string, { gains: number[]; minutes: number[] }>();
try {
  // Seed-major order: each seed's variants run back to back, so load drifts hit them alike.
  for (const seed of seeds) {
    for (const [name, algorithm] of variants) {
      const r = await runDemo(
        {
          ...DEMO_DEFAULTS,
          ...overrides,
          algorithm,
          seed,
          port: 0,
          json: true,
          outDir: join(out, `${name}-seed-${seed}`),
        },
        quiet,
      );
      const gain = (r.valAccuracyAfter - r.valAccuracyBefore) * 100;
      const minutes = r.seconds / 60;
      const s = summary.get(name) ?? { gains: [], minutes: [] };
      s.gains.push(gain);
      s.minutes.push(minutes);
      summary.set(name, s);
      emit({
        bench: "demo-variants",
        metric: "gain",
        value: Number(gain.toFixed(2)),
        unit: "points",
        variant: name,
        algorithm,
        seed,
        before: r.valAccuracyBefore,
        after: r.valAccuracyAfter,
        byOperation: r.byOperation,
        minutes: Number(minutes.toFixed(2)),
      });
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const base = summary.get(variants[0][0])!;
  for (const [name, s] of summary) {
    emit({
      bench: "demo-variants",
      metric: "meanGain",
      value: Number(mean(s.gains).toFixed(2)),
      unit: "points",
      variant: name,
      seeds: seeds.length,
      minGain: Number(Math.min(...s.gains).toFixed(2)),
      meanMinutes: Number(mean(s.minutes).toFixed(2)),
      timeVsBaseline: Number((mean(s.minutes) / mean(base.minutes)).toFixed(3)),
    });
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
