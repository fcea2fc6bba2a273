// Continuous batching: many concurrent generation requests share each GPU step. A step feeds
// every running sequence its next tokens (a whole prompt chunk for a new sequence, one sampled
// token for a decoding one) as rows of one packed forward pass over the KV cache; sequences join
// and leave between steps, so a new request never waits for another to finish.
//
// This file is the CPU side (queue, slots, stop conditions, streaming); `StepRunner` is the GPU
// side (src/model/engine.ts runs the transformer over the rows and samples on the GPU).

/** How to pick tokens; mirrors OpenAI's sampling parameters. */
export interface SamplingParams {
  /** 0 = greedy. */
  temperature?: number;
  /** 1 = off. */
  topP?: number;
  /** 0 = off. */
  topK?: number;
  maxTokens?: number;
  /** Token ids that end generation (in addition to the model's EOS ids). */
  stopTokenIds?: number[];
  /** Strings that end generation; the text is cut before the stop string. */
  stop?: string[];
  /** Same seed, same prompt → same tokens, whatever else is in the batch. */
  seed?: number;
  /** Also return the N most likely alternatives per position (N ≤ 20). */
  topLogprobs?: number;
  /** Do not stop at EOS (for benchmarks). */
  ignoreEos?: boolean;
}

/**
 * Restricts which tokens a generation may sample (structured output; src/model/grammar). Asked
 * for a mask before each sampled token, told each token sampled.
 */
export interface TokenConstraint {
  /** Allowed next tokens, bit-packed over the vocabulary (null: any); `tokensLeft` counts this one. */
  allowed(tokensLeft: number): Uint32Array | null;
  accept(token: number): void;
}

export type FinishReason = "stop" | "length" | "abort";

export interface TokenChoice {
  token: number;
  logprob: number;
}

export interface Generation {
  /** Sampled token ids, exactly as the model produced them (stop tokens included). */
  tokens: number[];
  /**
   * log p(token) under softmax(logits / temperature) (temperature 1 when greedy); with a
   * constraint, under that distribution restricted to the allowed tokens.
   */
  logprobs: number[];
  /** With a constraint: the same logprobs without the mask (what the trainer recomputes). */
  unmaskedLogprobs?: number[];
  /** Alternatives per position when `topLogprobs` was asked for. */
  topLogprobs?: TokenChoice[][];
  finishReason: FinishReason;
  /** The stop string or token that ended it, when one did. */
  stoppedBy?: string | number;
  /** Prompt tokens served from the cache of a previous step (0 for now: no prefix sharing). */
  promptTokens: number;
  /** Milliseconds from submission to the first sampled token. */
  timeToFirstTokenMs: number;
}

/** One row group of a step: a sequence and the tokens it feeds this step. */
export interface StepRow {
  slot: number;
  /** Tokens fed this step (prompt chunk, or the last sampled token). */
  tokens: number[];
  /** Position of tokens[0] in the sequence (= tokens already in the KV cache). */
  startPos: number;
  /** Sample after the last token of this row (false while a long prompt is still being fed). */
  sample: boolean;
  sampling: Required<Pick<SamplingParams, "temperature" | "topP" | "topK" | "topLogprobs">> & { seed: number };
  /** Index of the token being sampled within the generation (drives the seeded RNG). */
  sampleIndex: number;
  /** Allowed tokens for this sample (constrained generations only). */
  mask?: Uint32Array;
  /** The sequence's adapter: a name, null for the base model, absent for the default adapter. */
  adapter?: string | null;
}

export interface StepOutput extends TokenChoice {
  top?: TokenChoice[];
  /** The token's logprob without the mask (masked rows only). */
  unmaskedLogprob?: number;
}

/** The GPU side: runs one packed forward step and samples for rows with `sample`. */
export interface StepRunner {
  readonly maxSlots: number;
  readonly maxSeqLen: number;
  /** Most tokens (summed over rows) one step may feed. */
  readonly maxStepTokens: number;
  run(rows: StepRow[]): Promise<(StepOutput | null)[]>;
  /** Called when a slot's sequence ends, so its cache may be reused. */
  release?(slot: number): void;
  /**
   * Work to do while no request is waiting or running (the engine measures kernel variants).
   * It should return soon after `busy()` turns true; it must not throw.
   */
  whenIdle?(busy: () => boolean): Promise<void>;
}

export interface SubmitOptions extends SamplingParams {
  /** Structured output: restricts every sampled token. */
  constraint?: TokenConstraint;
  /**
   * The request this sequence belongs to (any value compared by identity: an HTTP request's
   * choices share one). Free slots go round-robin across groups, so one request's hundreds of
   * choices cannot make a small request wait for all of them. Default: its own group.
   */
  group?: unknown;
  /** Streams each sampled token as it arrives. */
  onToken?: (token: TokenChoice, index: number) => void;
  signal?: AbortSignal;
  /**
   * Which LoRA adapter generates (multi-agent): a named adapter, null for the base model, absent
   * for the default adapter. Sequences of different adapters share steps.
   */
  adapter?: string | null;
}

interface Sequence {
  prompt: number[];
  fed: number;
  out: Generation;
  options: SubmitOptions;
  sampling: StepRow["sampling"];
  maxTokens: number;
  stopIds: Set<number>;
  slot: number;
  group: unknown;
  submittedAt: number;
  /** Removes the abort listener (set when a signal was given). */
  detach?: () => void;
  resolve: (g: Generation) => void;
  reject: (e: Error) => void;
}

/** Decodes token ids to text (for stop strings). */
export type Decoder = (tokens: number[]) => string;

/**
 * Queues requests and runs steps while any are pending. One loop at a time; `submit` may be
 * called from any number of concurrent callers.
 */
export class Scheduler {
  private readonly runner: StepRunner;
  private readonly eosIds: number[];
  private readonly decode: Decoder;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly freeSlots: number[];
  private loop: Promise<void> | null = null;
  private seedCounter = 0x9e3779b9;
  /** Steps run so far and rows per step (for metrics: how well batching works). */
  readonly stats = { steps: 0, rows: 0, sequences: 0, tokensFed: 0 };

  constructor(runner: StepRunner, eosIds: number[], decode: Decoder) {
    this.runner = runner;
    this.eosIds = eosIds;
    this.decode = decode;
    this.freeSlots = Array.from({ length: runner.maxSlots }, (_, i) => runner.maxSlots - 1 - i);
  }

  /** Generates a continuation of `prompt`; resolves when it stops. */
  submit(prompt: number[], options: SubmitOptions = {}): Promise<Generation> {
    const temperature = options.temperature ?? 1;
    const maxTokens = options.maxTokens ?? this.runner.maxSeqLen - prompt.length;
    const problem = validateRequest(prompt, options, maxTokens, this.runner.maxSeqLen);
    if (problem) return Promise.reject(new RangeError(problem));
    return new Promise<Generation>((resolve, reject) => {
      const seq: Sequence = {
        prompt,
        fed: 0,
        out: { tokens: [], logprobs: [], finishReason: "length", promptTokens: prompt.length, timeToFirstTokenMs: 0 },
        options,
        sampling: {
          temperature,
          topP: options.topP ?? 1,
          topK: options.topK ?? 0,
          topLogprobs: options.topLogprobs ?? 0,
          seed: options.seed ?? this.nextSeed(),
        },
        maxTokens,
        stopIds: new Set([...(options.ignoreEos ? [] : this.eosIds), ...(options.stopTokenIds ?? [])]),
        slot: -1,
        group: options.group,
        submittedAt: performance.now(),
        resolve,
        reject,
      };
      if (options.topLogprobs) seq.out.topLogprobs = [];
      if (options.constraint) seq.out.unmaskedLogprobs = [];
      if (options.signal?.aborted) return reject(abortError());
      if (options.signal) {
        // Detached when the sequence ends: a request's signal can outlive it (held by the HTTP
        // layer), and the listener would keep the sequence, its tokens and callbacks alive.
        const signal = options.signal;
        const onAbort = () => this.abort(seq);
        signal.addEventListener("abort", onAbort, { once: true });
        seq.detach = () => signal.removeEventListener("abort", onAbort);
      }
      this.waiting.push(seq);
      this.stats.sequences++;
      this.kick();
    });
  }

  /** Requests waiting for a slot plus those running. */
  get load(): { waiting: number; running: number } {
    return { waiting: this.waiting.length, running: this.running.length };
  }

  /** Sequences waiting or running with the named adapter (multi-agent; see SubmitOptions.adapter). */
  usingAdapter(name: string): number {
    return [...this.waiting, ...this.running].filter((s) => s.options.adapter === name).length;
  }

  /** Resolves once every submitted request has finished. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  private nextSeed(): number {
    this.seedCounter = (Math.imul(this.seedCounter ^ (this.seedCounter >>> 16), 0x45d9f3b) + Date.now()) >>> 0;
    return this.seedCounter;
  }

  private kick(): void {
    if (this.loop) return;
    this.loop = this.runLoop()
      .then(() => this.idleWork())
      .finally(() => {
        this.loop = null;
        if (this.waiting.length > 0 || this.running.length > 0) this.kick();
      });
  }

  /** Lets the runner use a lull; requests arriving meanwhile wait at most for its current unit. */
  private async idleWork(): Promise<void> {
    if (!this.runner.whenIdle || this.waiting.length > 0 || this.running.length > 0) return;
    await this.runner.whenIdle(() => this.waiting.length > 0);
  }

  private async runLoop(): Promise<void> {
    while (this.waiting.length > 0 || this.running.length > 0) {
      this.admit();
      const rows = this.planStep();
      if (rows.length === 0) return;
      let outputs: (StepOutput | null)[];
      try {
        outputs = await this.runner.run(rows.map((r) => r.row));
      } catch (err) {
        // A failed step fails the sequences in it; the others carry on in the next step.
        const error = err instanceof Error ? err : new Error(String(err));
        for (const { seq } of rows) this.finish(seq, null, error);
        continue;
      }
      this.stats.steps++;
      this.stats.rows += rows.length;
      for (let i = 0; i < rows.length; i++) {
        const { seq, row } = rows[i];
        seq.fed += row.tokens.length;
        this.stats.tokensFed += row.tokens.length;
        const out = outputs[i];
        if (row.sample && out) this.accept(seq, out);
      }
    }
  }

  /**
   * Fills free slots fairly: each goes to the waiting sequence whose request (group) holds the
   * fewest slots, oldest first among equals — round-robin across requests instead of first come,
   * first served across sequences.
   */
  private admit(): void {
    if (this.waiting.length === 0 || this.freeSlots.length === 0) return;
    const held = new Map<unknown, number>();
    for (const seq of this.running) held.set(groupOf(seq), (held.get(groupOf(seq)) ?? 0) + 1);
    while (this.waiting.length > 0 && this.freeSlots.length > 0) {
      let best = 0;
      let bestHeld = held.get(groupOf(this.waiting[0])) ?? 0;
      for (let i = 1; i < this.waiting.length && bestHeld > 0; i++) {
        const h = held.get(groupOf(this.waiting[i])) ?? 0;
        if (h < bestHeld) {
          best = i;
          bestHeld = h;
        }
      }
      const [seq] = this.waiting.splice(best, 1);
      held.set(groupOf(seq), bestHeld + 1);
      seq.slot = this.freeSlots.pop()!;
      this.running.push(seq);
    }
  }

  /** Decoding sequences first (one token each), then prompt chunks within the token budget. */
  private planStep(): { seq: Sequence; row: StepRow }[] {
    const rows: { seq: Sequence; row: StepRow }[] = [];
    let budget = this.runner.maxStepTokens;
    const decoding = this.running.filter((s) => s.fed >= s.prompt.length);
    const prefilling = this.running.filter((s) => s.fed < s.prompt.length);
    for (const seq of decoding) {
      const last = seq.out.tokens[seq.out.tokens.length - 1];
      rows.push({ seq, row: this.row(seq, [last], true) });
      budget--;
    }
    for (const seq of prefilling) {
      if (budget <= 0) break;
      const remaining = seq.prompt.length - seq.fed;
      const n = Math.min(remaining, budget);
      rows.push({ seq, row: this.row(seq, seq.prompt.slice(seq.fed, seq.fed + n), n === remaining) });
      budget -= n;
    }
    return rows;
  }

  private row(seq: Sequence, tokens: number[], sample: boolean): StepRow {
    const row: StepRow = {
      slot: seq.slot,
      tokens,
      startPos: seq.fed,
      sample,
      sampling: seq.sampling,
      sampleIndex: seq.out.tokens.length,
    };
    if (seq.options.adapter !== undefined) row.adapter = seq.options.adapter;
    const constraint = seq.options.constraint;
    if (sample && constraint) {
      const left = Math.min(seq.maxTokens, this.runner.maxSeqLen - seq.prompt.length) - seq.out.tokens.length;
      row.mask = constraint.allowed(left) ?? undefined;
    }
    return row;
  }

  private accept(seq: Sequence, out: StepOutput): void {
    const g = seq.out;
    if (g.tokens.length === 0) g.timeToFirstTokenMs = performance.now() - seq.submittedAt;
    g.tokens.push(out.token);
    g.logprobs.push(out.logprob);
    if (g.unmaskedLogprobs) g.unmaskedLogprobs.push(out.unmaskedLogprob ?? out.logprob);
    try {
      seq.options.constraint?.accept(out.token);
    } catch (err) {
      this.finish(seq, null, err as Error);
      return;
    }
    if (g.topLogprobs) g.topLogprobs.push(out.top ?? []);
    seq.options.onToken?.({ token: out.token, logprob: out.logprob }, g.tokens.length - 1);
    if (seq.stopIds.has(out.token)) {
      g.finishReason = "stop";
      g.stoppedBy = out.token;
      this.finish(seq);
      return;
    }
    const stop = seq.options.stop;
    if (stop && stop.length > 0) {
      // Only the tail can newly contain a stop string: decode a window long enough to hold it.
      const text = this.decode(g.tokens.slice(-64));
      const hit = stop.find((s) => s.length > 0 && text.includes(s));
      if (hit !== undefined) {
        g.finishReason = "stop";
        g.stoppedBy = hit;
        this.finish(seq);
        return;
      }
    }
    if (g.tokens.length >= seq.maxTokens || seq.prompt.length + g.tokens.length >= this.runner.maxSeqLen) {
      g.finishReason = "length";
      this.finish(seq);
      return;
    }
  }

  private abort(seq: Sequence): void {
    seq.out.finishReason = "abort";
    const waitingAt = this.waiting.indexOf(seq);
    if (waitingAt >= 0) {
      this.waiting.splice(waitingAt, 1);
      seq.detach?.();
      seq.reject(abortError());
      return;
    }
    if (this.running.includes(seq)) this.finish(seq, null, abortError());
  }

  private finish(seq: Sequence, _unused: null = null, error?: Error): void {
    const at = this.running.indexOf(seq);
    if (at < 0) return;
    this.running.splice(at, 1);
    this.runner.release?.(seq.slot);
    this.freeSlots.push(seq.slot);
    seq.detach?.();
    if (error) seq.reject(error);
    else seq.resolve(seq.out);
  }
}

/** A sequence submitted without a group is a group of its own. */
function groupOf(seq: Sequence): unknown {
  return seq.group ?? seq;
}

function validateRequest(prompt: number[], o: SamplingParams, maxTokens: number, maxSeqLen: number): string | null {
  if (prompt.length === 0) return "prompt is empty";
  if (prompt.length >= maxSeqLen) {
    return `prompt has ${prompt.length} tokens; this model serves at most ${maxSeqLen} tokens per sequence (prompt + completion)`;
  }
  if (!Number.isInteger(maxTokens) || maxTokens < 1) return `max tokens must be a positive integer, got ${maxTokens}`;
  if (prompt.length + maxTokens > maxSeqLen) {
    return `prompt (${prompt.length} tokens) + max tokens (${maxTokens}) exceeds the context length ${maxSeqLen}`;
  }
  const t = o.temperature ?? 1;
  if (!(t >= 0) || !Number.isFinite(t)) return `temperature must be ≥ 0, got ${t}`;
  const p = o.topP ?? 1;
  if (!(p > 0 && p <= 1)) return `top_p must be in (0, 1], got ${p}`;
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) return `top_k must be a non-negative integer, got ${k}`;
  const n = o.topLogprobs ?? 0;
  if (!Number.isInteger(n) || n < 0 || n > 20) return `top_logprobs must be an integer in 0..20, got ${n}`;
  return null;
}

function abortError(): Error {
  const e = new Error("generation aborted");
  e.name = "AbortError";
  return e;
}
