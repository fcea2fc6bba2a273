// HttpStore: the Store interface over the HTTP API served by storeRoutes (routes.ts), so runners
// and trainers on other machines use exactly the same calls as in-process code. Error bodies are
// turned back into the same typed errors the libSQL store throws. Inputs are checked here with the
// store's own schemas before sending: JSON cannot carry NaN or typed arrays faithfully, so a value
// the libSQL store would reject must not be silently changed on the way instead. Lists are read
// page by page (the server caps each page by bytes) and returned whole, as the libSQL store does.
import { errorFromBody, StoreError, StoreValidationError } from "./errors.ts";
import {
  claimSchema,
  enqueueRolloutSchema,
  finishAttemptSchema,
  parseInput,
  resourcesNameSchema,
  resourcesValueSchema,
  rewardInputSchema,
  spanInputSchema,
  trainingStepSchema,
  transitionInputSchema,
  validateId,
} from "./inputs.ts";
import type {
  Attempt,
  Claim,
  ClaimInput,
  EnqueueRolloutInput,
  FinishAttemptInput,
  FinishResult,
  JsonValue,
  ListRolloutsQuery,
  ResourcesRecord,
  Reward,
  RewardInput,
  RewardQuery,
  Rollout,
  Span,
  SpanInput,
  SpanQuery,
  Store,
  SweepResult,
  TrainingStep,
  TrainingStepInput,
  TrainingStepQuery,
  Transition,
  TransitionInput,
  TransitionQuery,
  TransitionReceipt,
  WaitOptions,
} from "./types.ts";
import { transitionFromWire, transitionInputToWire, type WireTransition } from "./wire.ts";

export interface HttpStoreOptions {
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Longest single long-poll for waitForRollouts, ms (the server may bound it further). */
  maxWaitMs?: number;
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | boolean | string[] | undefined>;

/** A Store backed by a remote store server, e.g. `new HttpStore("http://10.0.0.5:8787")`. */
export class HttpStore implements Store {
  readonly #base: string;
  readonly #apiKey: string | undefined;
  readonly #maxWaitMs: number;
  readonly #fetch: typeof fetch;

  constructor(baseUrl: string, options: HttpStoreOptions = {}) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new StoreValidationError(`store base URL must be an absolute http(s) URL, got "${baseUrl}"`, "baseUrl");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new StoreValidationError(`store base URL must use http or https, got "${baseUrl}"`, "baseUrl");
    }
    this.#base = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
    this.#apiKey = options.apiKey;
    this.#maxWaitMs = options.maxWaitMs ?? 20_000;
    this.#fetch = options.fetch ?? fetch;
  }

  async #request<T>(method: "GET" | "POST", path: string, body?: unknown, query?: Query): Promise<T> {
    let url = `${this.#base}/api/v1${path}`;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new StoreError(`store at ${this.#base} is unreachable: ${(error as Error).message}`, {
        status: 503,
        type: "server_error",
        code: "store_unreachable",
      });
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? null : JSON.parse(text);
    } catch {
      throw new StoreError(`store answered ${method} ${path} with HTTP ${response.status} and a non-JSON body`, {
        status: response.status,
        type: "server_error",
        code: "bad_response",
      });
    }
    if (!response.ok) throw errorFromBody(response.status, (parsed as { error?: Record<string, unknown> })?.error);
    return parsed as T;
  }

  /** A list endpoint, every page of it: the server caps each page by bytes and hands a cursor. */
  async #list<T>(path: string, query: Query = {}): Promise<T[]> {
    const out: T[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.#request<{ data: T[]; next?: string | null }>("GET", path, undefined, {
        ...query,
        cursor,
      });
      for (const row of page.data) out.push(row);
      if (!page.next) return out;
      cursor = page.next;
    }
  }

  #id(value: string, param: string): string {
    return encodeURIComponent(validateId(value, param));
  }

  async enqueueRollout(input: EnqueueRolloutInput): Promise<Rollout> {
    parseInput(enqueueRolloutSchema, input, "rollout");
    return this.#request("POST", "/rollouts", input);
  }

  async enqueueRollouts(inputs: EnqueueRolloutInput[]): Promise<Rollout[]> {
    if (!Array.isArray(inputs)) throw new StoreValidationError("rollouts must be an array", "rollouts");
    for (const [i, input] of inputs.entries()) parseInput(enqueueRolloutSchema, input, "rollout", `rollouts[${i}]`);
    return (await this.#request<{ data: Rollout[] }>("POST", "/rollouts/batch", { rollouts: inputs })).data;
  }

  async claimRollout(input: ClaimInput): Promise<Claim | null> {
    parseInput(claimSchema, input, "claim");
    return (await this.#request<{ data: Claim | null }>("POST", "/rollouts/claim", input)).data;
  }

  async heartbeat(attemptId: string): Promise<Attempt> {
    return this.#request("POST", `/attempts/${this.#id(attemptId, "attemptId")}/heartbeat`);
  }

  async finishAttempt(attemptId: string, input: FinishAttemptInput): Promise<FinishResult> {
    parseInput(finishAttemptSchema, input, "finish");
    return this.#request("POST", `/attempts/${this.#id(attemptId, "attemptId")}/finish`, input);
  }

  async cancelRollout(rolloutId: string): Promise<Rollout> {
    return this.#request("POST", `/rollouts/${this.#id(rolloutId, "rolloutId")}/cancel`);
  }

  async addSpans(spans: SpanInput[]): Promise<Span[]> {
    if (!Array.isArray(spans)) throw new StoreValidationError("spans must be an array", "spans");
    for (const [i, span] of spans.entries()) parseInput(spanInputSchema, span, "span", `spans[${i}]`);
    return (await this.#request<{ data: Span[] }>("POST", "/spans", { spans })).data;
  }

  async addTransitions(transitions: TransitionInput[]): Promise<TransitionReceipt[]> {
    if (!Array.isArray(transitions)) throw new StoreValidationError("transitions must be an array", "transitions");
    // Validated here because encoding to bytes would silently wrap bad ids (-1 → 4294967295).
    const wire = transitions.map((t, i) => {
      parseInput(transitionInputSchema, t, "transition", `transitions[${i}]`);
      return transitionInputToWire(t);
    });
    return (await this.#request<{ data: TransitionReceipt[] }>("POST", "/transitions", { transitions: wire })).data;
  }

  async addRewards(rewards: RewardInput[]): Promise<Reward[]> {
    if (!Array.isArray(rewards)) throw new StoreValidationError("rewards must be an array", "rewards");
    for (const [i, reward] of rewards.entries()) parseInput(rewardInputSchema, reward, "reward", `rewards[${i}]`);
    return (await this.#request<{ data: Reward[] }>("POST", "/rewards", { rewards })).data;
  }

  async getRollout(rolloutId: string): Promise<Rollout> {
    return this.#request("GET", `/rollouts/${this.#id(rolloutId, "rolloutId")}`);
  }

  async listRollouts(query: ListRolloutsQuery = {}): Promise<Rollout[]> {
    const status = query.status === undefined ? undefined : Array.isArray(query.status) ? query.status : [query.status];
    return this.#list<Rollout>("/rollouts", { ...query, status });
  }

  async getAttempt(attemptId: string): Promise<Attempt> {
    return this.#request("GET", `/attempts/${this.#id(attemptId, "attemptId")}`);
  }

  async listAttempts(rolloutId: string): Promise<Attempt[]> {
    return this.#list<Attempt>(`/rollouts/${this.#id(rolloutId, "rolloutId")}/attempts`);
  }

  async getSpans(query: SpanQuery): Promise<Span[]> {
    return this.#list<Span>("/spans", { ...query });
  }

  async getTransitions(query: TransitionQuery): Promise<Transition[]> {
    return (await this.#list<WireTransition>("/transitions", { ...query })).map(transitionFromWire);
  }

  async getRewards(query: RewardQuery): Promise<Reward[]> {
    return this.#list<Reward>("/rewards", { ...query });
  }

  async waitForRollouts(ids: string[], options: WaitOptions): Promise<Rollout[]> {
    const timeoutMs = options?.timeoutMs;
    if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new StoreValidationError("timeoutMs must be a non-negative number of milliseconds", "timeoutMs");
    }
    const deadline = Date.now() + timeoutMs;
    // Long-poll in bounded slices so no single request outlives proxies' idle timeouts.
    for (;;) {
      const slice = Math.max(0, Math.min(this.#maxWaitMs, deadline - Date.now()));
      const { data } = await this.#request<{ data: Rollout[] }>("POST", "/rollouts/wait", {
        ...options,
        ids,
        timeoutMs: Math.round(slice),
      });
      if (data.length === ids.length || Date.now() >= deadline) return data;
    }
  }

  async addResources(name: string, value: JsonValue): Promise<ResourcesRecord> {
    parseInput(resourcesNameSchema, name, "resources name", "name");
    if (value === undefined) throw new StoreValidationError("resources value is required (any JSON value)", "value");
    parseInput(resourcesValueSchema, value, "resources value", "value");
    return this.#request("POST", `/resources/${this.#id(name, "name")}`, { value });
  }

  async getResources(name: string, version?: number): Promise<ResourcesRecord> {
    return this.#request("GET", `/resources/${this.#id(name, "name")}`, undefined, { version });
  }

  async addTrainingStep(input: TrainingStepInput): Promise<TrainingStep> {
    parseInput(trainingStepSchema, input, "training step");
    return this.#request("POST", "/training-steps", input);
  }

  async listTrainingSteps(query: TrainingStepQuery = {}): Promise<TrainingStep[]> {
    return this.#list<TrainingStep>("/training-steps", { ...query });
  }

  async sweep(): Promise<SweepResult> {
    return this.#request("POST", "/sweep");
  }

  /** Nothing to release: connections belong to the fetch implementation's pool. */
  async close(): Promise<void> {}
}
