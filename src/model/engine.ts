// The generation engine: the GPU side of continuous batching. Owns the per-layer KV caches
// (slots × context) and runs one packed step for the scheduler: every row's tokens go through
// the transformer together, the rows that sample get the LM head and GPU sampling, and one
// readback returns the sampled tokens and logprobs. Rows of different LoRA adapters share a step:
// they are grouped by adapter into contiguous ranges, the base matmuls run over all rows and each
// adapter's low-rank term over its range (Transformer.forwardCached, linearForwardRows).

import { cachePath, idleTuningEnabled, pendingClasses, tunePending } from "../gpu/autotune.ts";
import { createKvCache, type KvCache } from "../gpu/kernels/kvcache.ts";
import { sample } from "../gpu/kernels/sampling.ts";
import { Scope } from "../gpu/scope.ts";
import { readAll } from "../gpu/tensor.ts";
import { assertRunnable, slidingWindowMasked } from "./config.ts";
import { headLogits } from "./head.ts";
import type { LoraAdapter } from "./lora.ts";
import {
  type Generation,
  Scheduler,
  type StepOutput,
  type StepRow,
  type StepRunner,
  type SubmitOptions,
} from "./scheduler.ts";
import type { ModelTokenizer } from "./tokenizer.ts";
import type { AdapterRows, Transformer } from "./transformer.ts";

export interface EngineOptions {
  /** Sequences decoded at once (KV cache slots). Default 16. */
  maxSlots?: number;
  /**
   * Longest sequence (prompt + completion) served. Default min(model's max positions, 2048, and a
   * Qwen `use_sliding_window` window, which the engine does not mask and so also refuses below an
   * explicit value; Mistral's and Gemma 3's windows are masked and cap nothing).
   */
  maxSeqLen?: number;
  /** Most tokens one step feeds (prompt chunks + decode rows). Default 512. */
  maxStepTokens?: number;
}

export class Engine implements StepRunner {
  readonly maxSlots: number;
  readonly maxSeqLen: number;
  readonly maxStepTokens: number;
  readonly scheduler: Scheduler;
  private readonly model: Transformer;
  private readonly caches: KvCache[];
  /** Whether the adapter is used; the trainer's reference policy turns it off per call elsewhere. */
  useAdapter = true;

  constructor(model: Transformer, tokenizer: ModelTokenizer, options: EngineOptions = {}) {
    const { config } = model;
    this.model = model;
    this.maxSlots = options.maxSlots ?? 16;
    // Qwen's use_sliding_window (not modelled, see config.layerAttention) caps the context at the
    // window; Mistral's and Gemma 3's windows are masked in the attention kernels.
    const cap = slidingWindowMasked(config) ? Infinity : (config.slidingWindow ?? Infinity);
    this.maxSeqLen = options.maxSeqLen ?? Math.min(config.maxPositionEmbeddings, 2048, cap);
    assertRunnable(config, this.maxSeqLen);
    this.maxStepTokens = options.maxStepTokens ?? 512;
    if (this.maxStepTokens < this.maxSlots) {
      throw new Error(`maxStepTokens (${this.maxStepTokens}) must be at least maxSlots (${this.maxSlots})`);
    }
    const shape = {
      maxSlots: this.maxSlots,
      maxLen: this.maxSeqLen,
      nKvHeads: config.numKvHeads,
      headDim: config.headDim,
    };
    this.caches = Array.from({ length: config.numLayers }, () => createKvCache(model.gpu, shape));
    this.scheduler = new Scheduler(this, tokenizer.eosTokenIds, (ids) => tokenizer.decode(ids));
  }

  /** Queues a generation; it joins the running batch at the next step. */
  submit(prompt: number[], options: SubmitOptions = {}): Promise<Generation> {
    const name = options.adapter;
    if (typeof name === "string" && !this.model.adapters.has(name)) {
      return Promise.reject(
        new RangeError(`no LoRA adapter '${name}' (loaded: ${[...this.model.adapters.keys()].join(", ") || "none"})`),
      );
    }
    return this.scheduler.submit(prompt, options);
  }

  /** The version of the adapter that serves the next step. */
  get adapterVersion(): number | null {
    return this.model.lora?.version ?? null;
  }

  /** The adapter a row names (see SubmitOptions.adapter); none while `useAdapter` is off. */
  private adapterOf(name: string | null | undefined): LoraAdapter | null {
    if (!this.useAdapter || name === null) return null;
    if (name === undefined) return this.model.lora;
    const lora = this.model.adapters.get(name);
    if (!lora) throw new Error(`no LoRA adapter '${name}' is loaded (it was removed while generating?)`);
    return lora;
  }

  /**
   * Between requests: measures the kernel variants of shapes that ran on defaults (decode and
   * prefill GEMV/GEMM classes, and the trainer's, which shares the device), once per adapter;
   * the winners are cached on disk (src/gpu/autotune.ts). Hardware adapters only unless
   * FULGUR_AUTOTUNE=1 (idleTuningEnabled). Stops between classes when a request arrives. A failed measurement only logs: serving goes on with the defaults.
   */
  async whenIdle(busy: () => boolean): Promise<void> {
    const gpu = this.model.gpu;
    if (!idleTuningEnabled(gpu) || pendingClasses(gpu).length === 0) return;
    try {
      const tuned = await tunePending(gpu, { shouldStop: busy });
      const n = Object.keys(tuned).length;
      if (n > 0) console.error(`[fulgur] measured kernel variants for ${n} shape class(es): ${cachePath(gpu)}`);
    } catch (err) {
      console.error(`[fulgur] kernel tuning failed (serving keeps the defaults): ${(err as Error).message}`);
    }
  }

  async run(input: StepRow[]): Promise<(StepOutput | null)[]> {
    const gpu = this.model.gpu;
    // Rows of one adapter next to each other (first-seen order), so each adapter's LoRA term runs
    // over one range of rows; outputs go back by row, so the order changes nothing else.
    const byAdapter = new Map<LoraAdapter | null, StepRow[]>();
    for (const row of input) {
      const lora = this.adapterOf(row.adapter);
      const list = byAdapter.get(lora);
      if (list) list.push(row);
      else byAdapter.set(lora, [row]);
    }
    const rows = [...byAdapter.values()].flat();
    const ranges: AdapterRows[] = [];
    let start = 0;
    for (const [adapter, list] of byAdapter) {
      const count = list.reduce((n, r) => n + r.tokens.length, 0);
      ranges.push({ start, count, adapter });
      start += count;
    }
    const total = rows.reduce((n, r) => n + r.tokens.length, 0);
    const tokens = new Uint32Array(total);
    const slots = new Uint32Array(total);
    const positions = new Uint32Array(total);
    const outputRows: number[] = [];
    const sampled: StepRow[] = [];
    let at = 0;
    let maxContext = 1;
    for (const row of rows) {
      for (let i = 0; i < row.tokens.length; i++) {
        tokens[at + i] = row.tokens[i];
        slots[at + i] = row.slot;
        positions[at + i] = row.startPos + i;
      }
      at += row.tokens.length;
      maxContext = Math.max(maxContext, row.startPos + row.tokens.length);
      if (row.sample) {
        outputRows.push(at - 1);
        sampled.push(row);
      }
    }
    const scope = new Scope();
    try {
      const t = (data: Uint32Array) => scope.track(gpu.tensor([data.length], "u32", data));
      const picks = outputRows.length > 0 ? outputRows : [total - 1];
      const normed = this.model.forwardCached(
        t(tokens),
        t(slots),
        t(positions),
        this.caches,
        t(Uint32Array.from(picks)),
        maxContext,
        scope,
        ranges,
      );
      if (sampled.length === 0) {
        await gpu.sync();
        return input.map(() => null);
      }
      const logits = headLogits(this.model, normed, scope);
      const topN = Math.max(0, ...sampled.map((r) => r.sampling.topLogprobs));
      const result = sample(
        logits,
        sampled.map((r) => ({
          temperature: r.sampling.temperature,
          topK: r.sampling.topK,
          topP: r.sampling.topP,
          seed: r.sampling.seed,
          step: r.sampleIndex,
        })),
        { topLogprobs: topN, masks: sampled.some((r) => r.mask) ? sampled.map((r) => r.mask) : undefined },
      );
      const outputs = [result.tokens, result.logprobs, result.unmaskedLogprobs, result.topTokens, result.topLogprobs];
      for (const x of outputs) if (x) scope.track(x);
      const wanted = outputs.filter((t): t is NonNullable<typeof t> => t !== undefined);
      // One round trip for everything the step returns.
      const read = await readAll(wanted);
      const ids = read[0];
      const lps = read[1];
      const unmasked = result.unmaskedLogprobs ? read[2] : undefined;
      const [topIds, topLps] = read.slice(result.unmaskedLogprobs ? 3 : 2);
      const bySampled = new Map<StepRow, StepOutput>();
      sampled.forEach((row, i) => {
        const out: StepOutput = { token: ids[i], logprob: lps[i] };
        if (row.mask && unmasked) out.unmaskedLogprob = unmasked[i];
        const n = row.sampling.topLogprobs;
        if (n > 0 && topIds && topLps) {
          out.top = Array.from({ length: n }, (_, j) => ({
            token: topIds[i * topN + j],
            logprob: topLps[i * topN + j],
            // A masked row may have fewer allowed tokens than asked for: the filler slots go.
          })).filter((alt) => alt.token < logits.shape[1]);
        }
        bySampled.set(row, out);
      });
      return input.map((r) => bySampled.get(r) ?? null);
    } finally {
      scope.dispose();
    }
  }

  dispose(): void {
    for (const c of this.caches) {
      c.k.dispose();
      c.v.dispose();
    }
  }
}
