// LLM judges as a reward: `createJudge` scores one trajectory against a rubric, or a group of
// trajectories of the same task relatively (the judge sees every candidate at once), through any
// OpenAI-compatible chat endpoint — Fulgur's own server included. The answer is asked for as a
// JSON schema that names every candidate and allows only scores on the scale, so a server with
// constrained decoding (Fulgur's local engine, vLLM, OpenAI strict mode) always returns one score
// per candidate; answers from endpoints without it are parsed leniently and rejected with a clear
// error when they do not hold one score per candidate. Verdicts are cached by a hash of (model,
// rubric, scale, task, trajectories), in memory and optionally in a JSON-lines file, so scoring
// the same group again makes no call. Grouping concurrent rollouts is `judge-group.ts`'s job.

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { appendFile } from "node:fs/promises";

/** Sent as the request's `user`, so judge calls are recognisable in any log (see docs/judges.md). */
export const JUDGE_USER = "fulgur-judge";

export const DEFAULT_RUBRIC =
  "How well does the candidate accomplish the task? Reward correct, complete and concise work; " +
  "penalise wrong answers, made-up facts and unfinished work.";

export interface JudgeOptions {
  /** OpenAI-compatible base URL ending in /v1 (Fulgur's own: `${server}/v1`, unattributed). */
  baseURL: string;
  apiKey?: string;
  model: string;
  /** What a good trajectory is; default `DEFAULT_RUBRIC`. */
  rubric?: string;
  /** Integer scores from min to max (default 0..10); rewards are scores mapped onto [0, 1]. */
  scale?: { min: number; max: number };
  /** Ask for a short reason before each score (default true; better judgments, more tokens). */
  reasons?: boolean;
  /** A JSON-lines file (created, appended) or a Map to share; default an in-memory Map. */
  cache?: string | Map<string, JudgeVerdict[]>;
  /** Sampling temperature of the judge (default 0: the same group gets the same verdict). */
  temperature?: number;
  /** Completion budget of one judge call (default 64 + per candidate 16, or 96 with reasons). */
  maxTokens?: number;
  /** Extra tries after a transient failure (network, 429, 5xx) or an unparsable answer (default 2). */
  maxRetries?: number;
  /** Longest wait for one answer, ms (default 120 000). */
  timeoutMs?: number;
  /**
   * How the JSON answer is requested: "json_schema" (default; constrained where the endpoint
   * supports it), "json_object", or "none" (endpoints that reject `response_format`).
   */
  responseFormat?: "json_schema" | "json_object" | "none";
}

/** One candidate's verdict. */
export interface JudgeVerdict {
  /** The candidate's id in the judge prompt ("1", "2", …, in the order given). */
  id: string;
  /** On the judge's scale. */
  score: number;
  /** (score − min) / (max − min), in [0, 1]. */
  reward: number;
  reason: string;
}

export interface ScoreOptions {
  signal?: AbortSignal;
  /** This call's rubric instead of the judge's. */
  rubric?: string;
}

export interface Judge {
  readonly model: string;
  readonly rubric: string;
  /** Scores one trajectory against the rubric alone. */
  score(task: unknown, trajectory: unknown, options?: ScoreOptions): Promise<JudgeVerdict>;
  /** Scores the trajectories relative to each other (one call); one verdict per trajectory, in order. */
  scoreGroup(task: unknown, trajectories: unknown[], options?: ScoreOptions): Promise<JudgeVerdict[]>;
  /** Judge calls made and verdicts answered from the cache (in memory or file). */
  readonly stats: { calls: number; cacheHits: number };
}

/** A judge call that failed for good: unreachable endpoint, an error answer, or an answer that does not parse. */
export class JudgeError extends Error {
  override name = "JudgeError";
  constructor(
    message: string,
    /** HTTP status of the endpoint's answer, when there was one. */
    readonly status?: number,
    /** Another try may help (network, 429, 5xx, an unparsable answer). */
    readonly retryable = false,
  ) {
    super(message);
  }
}

const MAX_CANDIDATES = 64;
const CACHE_VERSION = 1;

/** Text the judge reads: strings as they are, chat messages as "role: content" lines, else JSON. */
export function trajectoryText(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every(isMessage)) {
    return value.map((m) => `${m.role}: ${messageContent(m)}`).join("\n");
  }
  return JSON.stringify(value, null, 1) ?? String(value);
}

interface MessageLike {
  role: string;
  content?: unknown;
  tool_calls?: unknown;
}

function isMessage(m: unknown): m is MessageLike {
  return typeof m === "object" && m !== null && typeof (m as { role?: unknown }).role === "string";
}

function messageContent(m: MessageLike): string {
  const parts: string[] = [];
  if (typeof m.content === "string") parts.push(m.content);
  else if (Array.isArray(m.content)) {
    for (const p of m.content) {
      const text = (p as { text?: unknown })?.text;
      parts.push(typeof text === "string" ? text : JSON.stringify(p));
    }
  } else if (m.content !== undefined && m.content !== null) parts.push(JSON.stringify(m.content));
  if (m.tool_calls !== undefined) parts.push(`[tool calls] ${JSON.stringify(m.tool_calls)}`);
  return parts.join(" ");
}

/** The response schema: every candidate id, each with (reason and) a score on the scale. */
export function verdictSchema(ids: string[], scale: { min: number; max: number }, reasons: boolean) {
  const scores = Array.from({ length: scale.max - scale.min + 1 }, (_, i) => scale.min + i);
  const candidate = {
    type: "object",
    properties: {
      ...(reasons ? { reason: { type: "string" } } : {}),
      score: { type: "integer", enum: scores },
    },
    required: reasons ? ["reason", "score"] : ["score"],
    additionalProperties: false,
  };
  return {
    type: "object",
    properties: {
      scores: {
        type: "object",
        properties: Object.fromEntries(ids.map((id) => [id, candidate])),
        required: ids,
        additionalProperties: false,
      },
    },
    required: ["scores"],
    additionalProperties: false,
  };
}

/** The judge's messages for a task and its candidates (one candidate = absolute scoring). */
export function judgeMessages(
  rubric: string,
  scale: { min: number; max: number },
  reasons: boolean,
  task: string,
  candidates: string[],
): { role: "system" | "user"; content: string }[] {
  const ids = candidates.map((_, i) => String(i + 1));
  const entry = reasons ? '{"reason": "...", "score": n}' : '{"score": n}';
  const relative = candidates.length > 1 ? " Compare the candidates: better work, higher score." : "";
  // Short on purpose: every token of it is paid for in each judge call, and small judges have short contexts.
  const system =
    `Judge each candidate's work on the task by the rubric. Score: integer ${scale.min} (worst) to ${scale.max} (best).${relative}\n` +
    `Rubric: ${rubric}\n` +
    `Answer JSON only: {"scores": {${ids.map((id) => `"${id}": ${entry}`).join(", ")}}}`;
  const user = [`Task: ${task}`, ...candidates.map((c, i) => `Candidate ${ids[i]}:\n${c}`)].join("\n\n");
  return [
    { role: "system", content: system },
    { role: "user", content: user },
  ];
}

/**
 * Reads the judge's answer: the JSON object (code fences and surrounding prose tolerated), scores
 * keyed by candidate id or as `[{id, score, reason}]`, every id exactly once, scores on the scale.
 * @throws JudgeError naming what is wrong, with the start of the answer.
 */
export function parseVerdicts(content: string, ids: string[], scale: { min: number; max: number }): JudgeVerdict[] {
  const excerpt = JSON.stringify(content.length > 300 ? `${content.slice(0, 300)}…` : content);
  const fail = (why: string): never => {
    throw new JudgeError(`the judge's answer ${why}: ${excerpt}`);
  };
  const start = content.indexOf("{");
  const end = content.lastIndexOf("}");
  if (start < 0 || end < start) fail("holds no JSON object");
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.slice(start, end + 1));
  } catch (error) {
    fail(`is not valid JSON (${(error as Error).message})`);
  }
  const scores = (parsed as { scores?: unknown }).scores;
  const entries = new Map<string, { score?: unknown; reason?: unknown }>();
  if (Array.isArray(scores)) {
    for (const item of scores) {
      const id = String((item as { id?: unknown })?.id ?? "");
      if (entries.has(id)) fail(`scores candidate ${id} twice`);
      entries.set(id, item as { score?: unknown; reason?: unknown });
    }
  } else if (typeof scores === "object" && scores !== null) {
    for (const [id, item] of Object.entries(scores)) {
      entries.set(id, typeof item === "object" && item !== null ? item : { score: item });
    }
  } else {
    fail('has no "scores" object');
  }
  return ids.map((id) => {
    const entry = entries.get(id) ?? fail(`has no score for candidate ${id}`);
    const raw = entry.score;
    const score =
      typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
    if (!Number.isFinite(score) || score < scale.min || score > scale.max) {
      fail(`scores candidate ${id} ${JSON.stringify(raw)}, not a number from ${scale.min} to ${scale.max}`);
    }
    const reason = typeof entry.reason === "string" ? entry.reason : "";
    return { id, score, reward: (score - scale.min) / (scale.max - scale.min), reason };
  });
}

/** A hash of everything a verdict depends on. */
function cacheKey(parts: unknown[]): string {
  return createHash("sha256")
    .update(JSON.stringify([CACHE_VERSION, ...parts]))
    .digest("hex");
}

/** Loads a JSON-lines cache file; a torn last line (a crash mid-append) is ignored, any other bad line throws. */
function loadCacheFile(path: string, into: Map<string, JudgeVerdict[]>): void {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, "utf8").split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      const { key, verdicts } = JSON.parse(line) as { key: string; verdicts: JudgeVerdict[] };
      if (typeof key !== "string" || !Array.isArray(verdicts)) throw new Error("expected {key, verdicts}");
      into.set(key, verdicts);
    } catch (error) {
      const last = lines.slice(i + 1).every((l) => l.trim() === "");
      if (!last) throw new Error(`judge cache ${path}, line ${i + 1}: ${(error as Error).message}`);
    }
  });
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** Creates a judge; nothing is called until the first score. */
export function createJudge(options: JudgeOptions): Judge {
  if (!options || typeof options !== "object") throw new Error("createJudge: options object is required");
  const { model } = options;
  if (typeof options.baseURL !== "string" || !/^https?:\/\//.test(options.baseURL)) {
    throw new Error(`createJudge: \`baseURL\` must be an http(s) URL, got ${String(options.baseURL)}`);
  }
  if (typeof model !== "string" || model.length === 0)
    throw new Error("createJudge: `model` must be a non-empty string");
  const baseURL = options.baseURL.replace(/\/+$/, "");
  const rubric = options.rubric ?? DEFAULT_RUBRIC;
  if (typeof rubric !== "string" || rubric.trim() === "")
    throw new Error("createJudge: `rubric` must be non-empty text");
  const scale = options.scale ?? { min: 0, max: 10 };
  if (
    !Number.isInteger(scale.min) ||
    !Number.isInteger(scale.max) ||
    scale.max <= scale.min ||
    scale.max - scale.min > 100
  ) {
    throw new Error(
      `createJudge: \`scale\` must be integers with min < max (at most 100 apart), got ${JSON.stringify(scale)}`,
    );
  }
  const reasons = options.reasons ?? true;
  const temperature = options.temperature ?? 0;
  const maxRetries = options.maxRetries ?? 2;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new Error(`createJudge: \`maxRetries\` must be a non-negative integer, got ${maxRetries}`);
  }
  const timeoutMs = options.timeoutMs ?? 120_000;
  const responseFormat = options.responseFormat ?? "json_schema";
  const cacheFile = typeof options.cache === "string" ? options.cache : null;
  const cache = options.cache instanceof Map ? options.cache : new Map<string, JudgeVerdict[]>();
  if (cacheFile) loadCacheFile(cacheFile, cache);
  const inFlight = new Map<string, Promise<JudgeVerdict[]>>();
  const stats = { calls: 0, cacheHits: 0 };
  const url = `${baseURL}/chat/completions`;

  /** One HTTP call; throws JudgeError (`retryable` when another try may help). */
  const call = async (body: Record<string, unknown>, ids: string[]): Promise<JudgeVerdict[]> => {
    stats.calls++;
    const timeout = AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
        },
        body: JSON.stringify(body),
        signal: timeout,
      });
    } catch (error) {
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : (error as Error).message;
      throw new JudgeError(`judge endpoint ${url} is unreachable: ${why}`, undefined, true);
    }
    const text = await response.text().catch(() => "");
    if (!response.ok) {
      let message = text.slice(0, 500);
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
      } catch {}
      throw new JudgeError(
        `judge endpoint ${url} answered HTTP ${response.status}: ${message}`,
        response.status,
        response.status === 429 || response.status >= 500,
      );
    }
    let content: unknown;
    let finish: unknown;
    try {
      const parsed = JSON.parse(text) as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[] };
      content = parsed.choices?.[0]?.message?.content;
      finish = parsed.choices?.[0]?.finish_reason;
    } catch {
      throw new JudgeError(
        `judge endpoint ${url} answered 200 with a body that is not JSON: ${text.slice(0, 200)}`,
        200,
        true,
      );
    }
    if (typeof content !== "string") {
      throw new JudgeError(
        `judge endpoint ${url} answered without a message content: ${text.slice(0, 200)}`,
        200,
        true,
      );
    }
    if (finish === "length") {
      throw new JudgeError(
        `the judge's answer was cut off at max_tokens ${String(body.max_tokens)}: raise \`maxTokens\` or set \`reasons: false\``,
      );
    }
    try {
      return parseVerdicts(content, ids, scale);
    } catch (error) {
      throw new JudgeError((error as Error).message, 200, true);
    }
  };

  const judgeCandidates = async (task: unknown, trajectories: unknown[], options_: ScoreOptions = {}) => {
    if (trajectories.length === 0) throw new Error("judge: no trajectories to score");
    if (trajectories.length > MAX_CANDIDATES) {
      throw new Error(`judge: at most ${MAX_CANDIDATES} trajectories per call, got ${trajectories.length}`);
    }
    const rubric_ = options_.rubric ?? rubric;
    if (typeof rubric_ !== "string" || rubric_.trim() === "") throw new Error("judge: `rubric` must be non-empty text");
    const taskText = trajectoryText(task);
    const texts = trajectories.map(trajectoryText);
    const key = cacheKey([model, rubric_, scale, reasons, taskText, texts]);
    const cached = cache.get(key);
    if (cached) {
      stats.cacheHits++;
      return cached.map((v) => ({ ...v }));
    }
    const running = inFlight.get(key);
    if (running) return untilAborted(running, options_.signal);
    const ids = texts.map((_, i) => String(i + 1));
    const body: Record<string, unknown> = {
      model,
      messages: judgeMessages(rubric_, scale, reasons, taskText, texts),
      temperature,
      max_tokens: options.maxTokens ?? 64 + texts.length * (reasons ? 96 : 16),
      user: JUDGE_USER,
    };
    if (responseFormat === "json_schema") {
      body.response_format = {
        type: "json_schema",
        json_schema: { name: "judge_scores", strict: true, schema: verdictSchema(ids, scale, reasons) },
      };
    } else if (responseFormat === "json_object") {
      body.response_format = { type: "json_object" };
    }
    const work = (async () => {
      for (let tryNo = 0; ; tryNo++) {
        try {
          const verdicts = await call(body, ids);
          cache.set(key, verdicts);
          if (cacheFile) await appendFile(cacheFile, `${JSON.stringify({ key, verdicts })}\n`);
          return verdicts;
        } catch (error) {
          if (!(error instanceof JudgeError) || !error.retryable || tryNo >= maxRetries) {
            if (error instanceof JudgeError && tryNo > 0) error.message += ` (after ${tryNo + 1} tries)`;
            throw error;
          }
          await sleep(100 * 2 ** tryNo);
        }
      }
    })();
    // Identical calls share one request, so it runs on without any one caller's signal.
    inFlight.set(key, work);
    void work.then(
      () => inFlight.delete(key),
      () => inFlight.delete(key),
    );
    return untilAborted(work, options_.signal);
  };

  return {
    model,
    rubric,
    stats,
    async score(task, trajectory, scoreOptions) {
      return (await judgeCandidates(task, [trajectory], scoreOptions))[0];
    },
    async scoreGroup(task, trajectories, scoreOptions) {
      if (!Array.isArray(trajectories)) throw new Error("judge.scoreGroup: trajectories must be an array");
      return await judgeCandidates(task, trajectories, scoreOptions);
    },
  };
}

/** `promise`, or the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
