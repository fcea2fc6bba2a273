// Several LoRA adapters in one batch: decode throughput of 8 concurrent requests on one base when
// they all use one adapter (the single-adapter path), when they split over 2 or 8 named adapters
// (the engine groups rows by adapter: one base matmul, each adapter's LoRA term over its rows,
// see docs/multi-agent.md), and with no adapter at all. Ratios are against "1 adapter", same run.
//   npx tsx bench/multi-adapter.ts [--hidden 512] [--layers 4] [--rank 16] [--tokens 32]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../src/model/model.ts";
import { writeTinyModel } from "../src/model/tiny.ts";
import { emit, medianMs } from "./lib.ts";

const { values } = parseArgs({
  options: {
    hidden: { type: "string", default: "512" },
    layers: { type: "string", default: "4" },
    rank: { type: "string", default: "16" },
    tokens: { type: "string", default: "32" },
  },
});
const HIDDEN = Number(values.hidden);
const RANK = Number(values.rank);
const TOKENS = Number(values.tokens);
const ROWS = 8;

const dir = mkdtempSync(join(tmpdir(), "fulgur-bench-multi-"));
try {
  await writeTinyModel(dir, {
    hidden: HIDDEN,
    layers: Number(values.layers),
    heads: HIDDEN / 64,
    kvHeads: Math.max(1, HIDDEN / 256),
    intermediate: Math.round((HIDDEN * 8) / 3 / 32) * 32,
    seed: 3,
  });
  const model = await loadModel(dir, { maxSlots: ROWS, maxSeqLen: 256 });
  try {
    model.createAdapter({ rank: RANK, alpha: 2 * RANK, seed: 1 });
    for (let k = 0; k < ROWS; k++) model.createAdapter({ rank: RANK, alpha: 2 * RANK, seed: 10 + k }, `a${k}`);
    const prompt = model.tokenizer.encode("a short prompt for every row");
    const configs: { name: string; adapterOf: (row: number) => string | null | undefined }[] = [
      { name: "1 adapter", adapterOf: () => undefined },
      { name: "2 adapters", adapterOf: (r) => `a${r % 2}` },
      { name: "8 adapters", adapterOf: (r) => `a${r}` },
      { name: "no adapter", adapterOf: () => null },
    ];
    const decode = async (adapterOf: (row: number) => string | null | undefined) => {
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: ROWS }, (_, r) =>
          model.engine.submit(prompt, { adapter: adapterOf(r), temperature: 0, maxTokens: TOKENS, ignoreEos: true }),
        ),
      );
      return performance.now() - t0;
    };
    const ms = new Map<string, number>();
    for (const c of configs) ms.set(c.name, await medianMs(() => decode(c.adapterOf), 3, 1));
    const base = ms.get("1 adapter")!;
    for (const c of configs) {
      const t = ms.get(c.name)!;
      emit({
        bench: "multi-adapter",
        metric: `decode tokens/s, ${ROWS} rows, ${c.name}`,
        value: (ROWS * TOKENS * 1000) / t,
        unit: "tokens/s",
        vsOneAdapter: base / t,
        hidden: HIDDEN,
        rank: RANK,
        device: model.gpu.info.description,
      });
    }
  } finally {
    model.dispose();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
