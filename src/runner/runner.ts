// The Runner: claims rollouts from a Store (in-process libSQL or HttpStore on another machine),
// runs an unchanged agent function on each with up to `concurrency` at once, heartbeats while it
// runs, enforces the rollout's timeout, and finishes the attempt with the outcome: succeeded with
// its reward, failed with the error, or timeout. Retrying is the store's job (per rollout config).
import { hostname } from "node:os";
import { ConflictError } from "../store/errors.ts";
import type { AttemptError, Claim, FinishStatus, Store } from "../store/types.ts";
import { createAttemptContext } from "./context.ts";
import { createJudge, type Judge, type JudgeOptions } from "./judge.ts";
import { GroupJudge } from "./judge-group.ts";
import type { Agent, AgentResult, RunnerEvent } from "./types.ts";

export interface RunnerOptions {
  /** LibsqlStore in-process, or HttpStore for remote workers. */
  store: Store;
  agent: Agent;
  /** Where the OpenAI proxy is; ctx.llm.baseURL = `${serverUrl}/rollouts/${r}/attempts/${a}/v1`. */
  serverUrl: string;
  model: string;
  /**
   * ctx.llm.apiKey when the claim carries no attempt token (a server without an API key);
   * otherwise agents get the claim's token, never this key.
   */
  apiKey?: string;
  /** Agents run at once (default 4). */
  concurrency?: number;
  workerId?: string;
  /** Only claim rollouts of this mode (default: any). */
  mode?: "train" | "val" | "test";
  /** Heartbeat interval per running attempt, ms (default 2000). */
  heartbeatMs?: number;
  /** Idle poll interval when nothing is queued, ms (default 100). */
  pollMs?: number;
  /**
   * Wait after the agent returns before finishing the attempt, ms: the proxy writes LLM calls in
   * batches, and a call written after the finish would be flagged late. Default 100, or 0 when
   * the store flushes the records itself (`store.flushesCallRecordsBeforeFinish`).
   */
  settleMs?: number;
  onEvent?: (e: RunnerEvent) => void;
  /**
   * The judge behind ctx.judge: a Judge, or options for one. Unset fields default to the served
   * model at `${serverUrl}/v1` (unattributed, with `apiKey`, never an attempt token) and the
   * default rubric; an explicit `baseURL` gets only the `apiKey` given here, never the runner's.
   */
  judge?: Judge | Partial<JudgeOptions>;
  /** Longest wait for the rest of a GRPO group before judging the part that has submitted, ms (default 30 000). */
  judgeGroupTimeoutMs?: number;
}

export interface RunnerStats {
  claimed: number;
  succeeded: number;
  failed: number;
  timedOut: number;
}

const FINISH_RETRIES = 5;

/** Thrown into ctx.signal when the rollout's timeout passes. */
class AgentTimeoutError extends Error {
  override name = "TimeoutError";
}

function errorRecord(error: unknown): AttemptError {
  if (error instanceof Error) {
    return { message: error.message || error.name, type: error.name, ...(error.stack ? { stack: error.stack } : {}) };
  }
  return { message: typeof error === "string" ? error : (JSON.stringify(error) ?? String(error)), type: typeof error };
}

/** The final reward an agent returned: a number, `{ reward }`, or null for "use the last emitted one". */
export function rewardFromResult(result: AgentResult): number | null {
  if (result === undefined || result === null) return null;
  const value = typeof result === "number" ? result : typeof result === "object" ? result.reward : undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Error(
      `agent must return a finite number, { reward: number } or nothing; got ${JSON.stringify(result) ?? String(result)}`,
    );
  }
  return value;
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

export class Runner {
  readonly stats: RunnerStats = { claimed: 0, succeeded: 0, failed: 0, timedOut: 0 };
  readonly #store: Store;
  readonly #agent: Agent;
  readonly #serverUrl: string;
  readonly #model: string;
  readonly #apiKey: string;
  readonly #concurrency: number;
  readonly #workerId: string;
  readonly #mode: RunnerOptions["mode"];
  readonly #heartbeatMs: number;
  readonly #pollMs: number;
  readonly #settleMs: number;
  readonly #onEvent: (e: RunnerEvent) => void;
  readonly #running = new Set<Promise<void>>();
  #loop: Promise<void> | null = null;
  #stopping = false;
  readonly #groups: GroupJudge;
  /** When a claim last found nothing to run (0: never). */
  #emptyClaimAt = 0;
  /** Wakes the claim loop early: a slot freed up or stop() was called. */
  #wake: (() => void) | null = null;

  constructor(options: RunnerOptions) {
    if (!options || typeof options !== "object") throw new Error("Runner: options object is required");
    const { store, agent, serverUrl, model } = options;
    if (!store || typeof store.claimRollout !== "function") throw new Error("Runner: `store` must be a Store");
    if (typeof agent !== "function") throw new Error(`Runner: \`agent\` must be a function, got ${typeof agent}`);
    if (typeof serverUrl !== "string" || !/^https?:\/\//.test(serverUrl)) {
      throw new Error(`Runner: \`serverUrl\` must be an http(s) URL of the Fulgur server, got ${String(serverUrl)}`);
    }
    if (typeof model !== "string" || model.length === 0) throw new Error("Runner: `model` must be a non-empty string");
    const positiveInt = (value: number | undefined, name: string, fallback: number) => {
      if (value === undefined) return fallback;
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`Runner: \`${name}\` must be a positive integer, got ${value}`);
      return value;
    };
    this.#store = store;
    this.#agent = agent;
    this.#serverUrl = serverUrl.replace(/\/+$/, "");
    this.#model = model;
    this.#apiKey = options.apiKey ?? "fulgur";
    this.#concurrency = positiveInt(options.concurrency, "concurrency", 4);
    this.#workerId = options.workerId ?? `${hostname()}-${process.pid}`;
    this.#mode = options.mode;
    this.#heartbeatMs = positiveInt(options.heartbeatMs, "heartbeatMs", 2000);
    this.#pollMs = positiveInt(options.pollMs, "pollMs", 100);
    if (options.settleMs !== undefined && !(Number.isInteger(options.settleMs) && options.settleMs >= 0)) {
      throw new Error(`Runner: \`settleMs\` must be a non-negative integer, got ${options.settleMs}`);
    }
    this.#settleMs = options.settleMs ?? (store.flushesCallRecordsBeforeFinish ? 0 : 100);
    this.#onEvent = options.onEvent ?? (() => {});
    const given = options.judge ?? {};
    const judge =
      typeof (given as Judge).scoreGroup === "function"
        ? (given as Judge)
        : createJudge({
            ...(given as Partial<JudgeOptions>),
            baseURL: (given as Partial<JudgeOptions>).baseURL ?? `${this.#serverUrl}/v1`,
            apiKey: (given as Partial<JudgeOptions>).baseURL ? (given as Partial<JudgeOptions>).apiKey : this.#apiKey,
            model: (given as Partial<JudgeOptions>).model ?? this.#model,
          });
    this.#groups = new GroupJudge({
      judge,
      store,
      groupTimeoutMs: options.judgeGroupTimeoutMs,
      stalled: () => this.#judgeStalled(),
    });
  }

  /**
   * No attempt here can make progress until the judge answers: all running ones wait on it and
   * no more can be claimed (every slot taken, or the queue found empty since the last submission).
   */
  #judgeStalled(): boolean {
    const waiting = this.#groups.waiting();
    if (waiting === 0 || waiting < this.#running.size) return false;
    return this.#running.size >= this.#concurrency || this.#emptyClaimAt > this.#groups.lastSubmitAt;
  }

  get workerId(): string {
    return this.#workerId;
  }

  /** Begins claiming and running in the background. */
  start(): void {
    if (this.#loop) throw new Error("Runner: already started");
    this.#stopping = false;
    this.#loop = this.#claimLoop();
  }

  /** Stops claiming, then resolves once every running agent has finished (or hit its timeout). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#loop;
    while (this.#running.size > 0) await Promise.all([...this.#running]);
    this.#loop = null;
  }

  /** Starts, and resolves after a clean stop once `signal` aborts (never, without one). */
  async run(signal?: AbortSignal): Promise<void> {
    this.start();
    await new Promise<void>((done) => {
      if (!signal) return;
      if (signal.aborted) return done();
      signal.addEventListener("abort", () => done(), { once: true });
    });
    await this.stop();
  }

  #emit(event: RunnerEvent): void {
    try {
      this.#onEvent(event);
    } catch (error) {
      console.error("fulgur runner: onEvent threw", error);
    }
  }

  /** Sleeps `ms` unless woken by a freed slot or stop(). */
  #idle(ms: number): Promise<void> {
    return new Promise<void>((done) => {
      const timer = setTimeout(finish, ms);
      function finish() {
        clearTimeout(timer);
        done();
      }
      this.#wake = finish;
    }).then(() => {
      this.#wake = null;
    });
  }

  async #claimLoop(): Promise<void> {
    while (!this.#stopping) {
      if (this.#running.size >= this.#concurrency) {
        await this.#idle(this.#pollMs * 10);
        continue;
      }
      let claim: Claim | null;
      try {
        claim = await this.#store.claimRollout({
          workerId: this.#workerId,
          ...(this.#mode ? { mode: this.#mode } : {}),
        });
      } catch (error) {
        this.#emit({ type: "error", message: `claim failed: ${(error as Error).message}`, error });
        await this.#idle(Math.max(this.#pollMs, 1000));
        continue;
      }
      if (!claim) {
        this.#emptyClaimAt = Date.now();
        if (this.#groups.waiting() > 0) this.#groups.check();
        await this.#idle(this.#pollMs);
        continue;
      }
      this.stats.claimed++;
      const job = this.#runAttempt(claim).catch((error) => {
        this.#emit({ type: "error", message: `attempt ${claim.attempt.id}: ${(error as Error).message}`, error });
      });
      this.#running.add(job);
      void job.then(() => {
        this.#running.delete(job);
        if (this.#groups.waiting() > 0) this.#groups.check();
        this.#wake?.();
      });
    }
  }

  async #runAttempt({ rollout, attempt, token }: Claim): Promise<void> {
    const started = Date.now();
    const controller = new AbortController();
    const attemptId = attempt.id;
    this.#emit({ type: "started", rolloutId: rollout.id, attemptId, attemptNo: attempt.attemptNo });

    // Heartbeats keep the sweeper from declaring us unresponsive; a conflict means the store has
    // already ended the attempt (swept, cancelled), so the agent is told to stop.
    let endedByStore = false;
    const beat = async () => {
      try {
        await this.#store.heartbeat(attemptId);
      } catch (error) {
        if (error instanceof ConflictError) {
          endedByStore = true;
          controller.abort(new Error(`attempt ${attemptId} was ended by the store: ${error.message}`));
        }
        // Transient failures: the next beat retries; the unresponsive timeout is the backstop.
      }
    };
    await beat();
    const heartbeat = setInterval(() => void beat(), this.#heartbeatMs);

    let status: FinishStatus = "succeeded";
    let error: AttemptError | null = null;
    let reward: number | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let attemptCtx: ReturnType<typeof createAttemptContext> | null = null;
    try {
      let resources: unknown | null = null;
      if (rollout.resourcesName) {
        const record = await this.#store.getResources(rollout.resourcesName, attempt.resourcesVersion ?? undefined);
        resources = record.value;
      }
      attemptCtx = createAttemptContext({
        store: this.#store,
        rolloutId: rollout.id,
        attemptId,
        groupId: rollout.groupId,
        judge: this.#groups,
        mode: rollout.mode,
        llm: {
          baseURL: `${this.#serverUrl}/rollouts/${rollout.id}/attempts/${attemptId}/v1`,
          // The attempt's own token when the server issued one: the agent never holds the
          // worker's key, so it cannot touch other rollouts or call admin routes.
          apiKey: token ?? this.#apiKey,
          model: this.#model,
        },
        signal: controller.signal,
        resources,
      });
      const ctx = attemptCtx.ctx;
      const outcome = Promise.resolve().then(() => this.#agent(rollout.input, ctx));
      const timeoutMs = rollout.config.timeoutMs;
      const timedOut =
        timeoutMs === null
          ? null
          : new Promise<"timeout">((done) => {
              // Measured from the claim on the store's clock, as the sweeper measures it.
              const left = Math.max(0, attempt.startedAt + timeoutMs - Date.now());
              timer = setTimeout(() => done("timeout"), Math.min(left, timeoutMs));
            });
      const winner = await (timedOut
        ? Promise.race([outcome.then((r) => ({ r })), timedOut])
        : outcome.then((r) => ({ r })));
      if (winner === "timeout") {
        status = "timeout";
        error = {
          message: `agent did not finish within the rollout's timeout of ${timeoutMs} ms`,
          type: "TimeoutError",
        };
        controller.abort(new AgentTimeoutError(error.message));
        // The agent may ignore the signal; its promise is left to settle on its own.
        outcome.catch(() => {});
      } else {
        reward = rewardFromResult(winner.r);
      }
    } catch (thrown) {
      status = "failed";
      error = errorRecord(thrown);
    } finally {
      clearTimeout(timer);
    }

    try {
      if (status !== "timeout" && this.#settleMs > 0) await sleep(this.#settleMs);
      await attemptCtx?.settle();
      if (reward === null && status === "succeeded") reward = attemptCtx?.lastReward() ?? null;
      const result = await this.#finish(attemptId, { status, error, reward });
      const late = result?.late ?? endedByStore;
      if (status === "succeeded") this.stats.succeeded++;
      else if (status === "timeout") this.stats.timedOut++;
      else this.stats.failed++;
      this.#emit({
        type: status === "succeeded" ? "finished" : "failed",
        rolloutId: rollout.id,
        attemptId,
        status,
        reward: result?.attempt.reward ?? reward,
        error,
        durationMs: Date.now() - started,
        late,
      });
    } finally {
      clearInterval(heartbeat);
      if (!controller.signal.aborted) controller.abort(new Error("attempt finished"));
    }
  }

  /** finishAttempt with retries for transient (network/5xx) failures; the sweeper is the backstop. */
  async #finish(attemptId: string, input: { status: FinishStatus; error: AttemptError | null; reward: number | null }) {
    for (let tryNo = 1; ; tryNo++) {
      try {
        return await this.#store.finishAttempt(attemptId, {
          status: input.status,
          error: input.error,
          ...(input.reward !== null ? { reward: input.reward } : {}),
        });
      } catch (error) {
        const status = (error as { status?: number }).status;
        const transient = status === undefined || status >= 500;
        if (!transient || tryNo >= FINISH_RETRIES) throw error;
        await sleep(200 * 2 ** tryNo);
      }
    }
  }
}
