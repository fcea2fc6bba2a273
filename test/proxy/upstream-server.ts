// A small, real OpenAI-compatible server for testing and benchmarking the proxy: deterministic
// answers with token ids (vLLM's `return_token_ids` fields) and logprobs, streaming and not, a
// context window, stop strings, max_tokens, vLLM-shaped errors, and Hermes tool-call text (or
// parsed tool_calls, like vLLM run with `--tool-call-parser hermes`). Its tokenizer is a toy:
// every whitespace-led word is one token whose id is a hash of its text.
//
// What it answers (last message decides):
//   - user text containing "!fail500" → HTTP 500;
//   - tools offered (tool_choice ≠ none) and the last message from the user → a `<tool_call>` to
//     the first (or the chosen) tool with {"query": <text>}; "twice" in the text → two calls;
//     "think" → the content "Let me look that up." before the call;
//   - last message from a tool → "The tool returned: <content>";
//   - response_format json_object → {"echo": <text>};
//   - otherwise "You said: <text>" (choice k > 0 appends " (variant k)").
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { parseToolCalls } from "../../src/proxy/tool-calls.ts";

export interface UpstreamServerOptions {
  /** The model id it serves (others get 404). */
  model?: string;
  /** Prompt + max_tokens above this → vLLM's context-length 400. */
  contextLength?: number;
  /** Parse tool calls itself and return `tool_calls` (vLLM with a tool parser) instead of raw text. */
  toolParser?: boolean;
  /** Delay before each streamed token (to test client aborts). */
  tokenDelayMs?: number;
}

export interface UpstreamStats {
  chatRequests: number;
  completionRequests: number;
  /** Streams stopped because the client (the proxy) went away. */
  aborted: number;
  /** Request bodies as received, newest last. */
  bodies: Record<string, unknown>[];
}

/** Splits text into whitespace-led words; joining the pieces gives the text back exactly. */
export function toyTokenize(text: string): string[] {
  return text.match(/\s*\S+|\s+/gu) ?? [];
}

/** FNV-1a of the token text, folded into a 100k vocabulary. */
export function toyTokenId(token: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(token)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 100_000;
}

/** Log probability the toy model assigns to the token at `position` (deterministic, < 0). */
export function toyLogprob(tokenId: number, position: number): number {
  return -(((tokenId * 31 + position * 17) % 1000) + 1) / 500;
}

type Message = { role: string; content?: unknown; tool_calls?: unknown };

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p as { text?: string }).text ?? "").join("\n");
  return "";
}

/** The prompt text the toy model sees for a chat request (ChatML-like). */
export function toyRenderChat(messages: Message[]): string {
  return `${messages.map((m) => `<|${m.role}|> ${textOf(m.content)}`).join(" ")} <|assistant|>`;
}

/** The token ids of a prompt (chat: rendered first). */
export function toyPromptIds(prompt: string | number[]): number[] {
  return typeof prompt === "string" ? toyTokenize(prompt).map(toyTokenId) : prompt;
}

interface Generated {
  tokens: string[];
  finish: "stop" | "length";
}

function generate(full: string, maxTokens: number | null, stop: string[]): Generated {
  let text = full;
  let finish: "stop" | "length" = "stop";
  for (const s of stop) {
    const at = text.indexOf(s);
    if (at >= 0) text = text.slice(0, at);
  }
  let tokens = toyTokenize(text);
  if (maxTokens !== null && tokens.length > maxTokens) {
    tokens = tokens.slice(0, maxTokens);
    finish = "length";
  }
  return { tokens, finish };
}

function chatReply(body: Record<string, unknown>, choice: number): string {
  const messages = body.messages as Message[];
  const last = messages[messages.length - 1];
  const text = textOf(last.content);
  const tools = (body.tools as { function: { name: string } }[] | undefined) ?? [];
  const toolChoice = body.tool_choice as string | { function: { name: string } } | undefined;
  if (tools.length > 0 && toolChoice !== "none" && last.role === "user") {
    const name = typeof toolChoice === "object" ? toolChoice.function.name : tools[0].function.name;
    const call = `<tool_call>\n${JSON.stringify({ name, arguments: { query: text } })}\n</tool_call>`;
    const calls = text.includes("twice") ? `${call}\n${call}` : call;
    return text.includes("think") ? `Let me look that up.\n${calls}` : calls;
  }
  if (last.role === "tool") return `The tool returned: ${text}`;
  if ((body.response_format as { type?: string } | undefined)?.type === "json_object") {
    return JSON.stringify({ echo: text });
  }
  return `You said: ${text}${choice > 0 ? ` (variant ${choice})` : ""}`;
}

function vllmError(
  c: { json: (b: unknown, s: 400 | 404 | 500) => Response },
  status: 400 | 404 | 500,
  message: string,
) {
  const type = status === 400 ? "BadRequestError" : status === 404 ? "NotFoundError" : "InternalServerError";
  return c.json({ object: "error", message, type, param: null, code: status }, status);
}

function logprobEntry(token: string, id: number, position: number, top: number) {
  const logprob = toyLogprob(id, position);
  const bytes = [...new TextEncoder().encode(token)];
  const alternatives = Array.from({ length: top }, (_, j) =>
    j === 0
      ? { token, logprob, bytes }
      : { token: `alt${j}`, logprob: logprob - j, bytes: [...new TextEncoder().encode(`alt${j}`)] },
  );
  return { token, logprob, bytes, top_logprobs: alternatives };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The upstream as a Hono app; `stats` counts what it served. */
export function createUpstreamApp(options: UpstreamServerOptions = {}): { app: Hono; stats: UpstreamStats } {
  const model = options.model ?? "toy-upstream";
  const contextLength = options.contextLength ?? 4096;
  const stats: UpstreamStats = { chatRequests: 0, completionRequests: 0, aborted: 0, bodies: [] };
  const app = new Hono();

  app.get("/v1/models", (c) =>
    c.json({ object: "list", data: [{ id: model, object: "model", created: 1700000000, owned_by: "toy" }] }),
  );

  app.post("/v1/chat/completions", async (c) => {
    const body = (await c.req.json()) as Record<string, unknown>;
    stats.chatRequests++;
    stats.bodies.push(body);
    if (body.model !== model) return vllmError(c, 404, `The model \`${String(body.model)}\` does not exist.`);
    const messages = body.messages as Message[];
    if (messages.some((m) => textOf(m.content).includes("!fail500"))) return vllmError(c, 500, "engine crashed");
    const promptIds = toyPromptIds(toyRenderChat(messages));
    const maxTokens = (body.max_completion_tokens ?? body.max_tokens ?? null) as number | null;
    if (promptIds.length + (maxTokens ?? 0) > contextLength) {
      return vllmError(
        c,
        400,
        `This model's maximum context length is ${contextLength} tokens. However, you requested ${promptIds.length + (maxTokens ?? 0)} tokens (${promptIds.length} in the messages, ${maxTokens ?? 0} in the completion). Please reduce the length of the messages or completion.`,
      );
    }
    const n = (body.n as number | undefined) ?? 1;
    const stop = body.stop === undefined ? [] : typeof body.stop === "string" ? [body.stop] : (body.stop as string[]);
    const withIds = body.return_token_ids === true;
    const top = body.logprobs === true ? ((body.top_logprobs as number | undefined) ?? 0) : -1;
    const outs = Array.from({ length: n }, (_, k) => generate(chatReply(body, k), maxTokens, stop));
    const id = `chatcmpl-toy${stats.chatRequests}`;
    const created = Math.floor(Date.now() / 1000);
    const usage = {
      prompt_tokens: promptIds.length,
      completion_tokens: outs.reduce((s, o) => s + o.tokens.length, 0),
      total_tokens: promptIds.length + outs.reduce((s, o) => s + o.tokens.length, 0),
    };
    const parse = options.toolParser === true && Array.isArray(body.tools) && body.tool_choice !== "none";

    if (body.stream !== true) {
      return c.json({
        id,
        object: "chat.completion",
        created,
        model,
        prompt_token_ids: withIds ? promptIds : undefined,
        choices: outs.map((o, k) => {
          const text = o.tokens.join("");
          const parsed = parse ? parseToolCalls(text) : null;
          const hasCalls = parsed !== null && parsed.toolCalls.length > 0;
          return {
            index: k,
            message: {
              role: "assistant",
              content: hasCalls ? parsed.content : text,
              tool_calls: hasCalls ? parsed.toolCalls : [],
            },
            logprobs: top >= 0 ? { content: o.tokens.map((t, i) => logprobEntry(t, toyTokenId(t), i, top)) } : null,
            finish_reason: hasCalls ? "tool_calls" : o.finish,
            token_ids: withIds ? o.tokens.map(toyTokenId) : undefined,
          };
        }),
        usage,
      });
    }

    // Streaming: one chunk per token, choices interleaved, then finish chunks and usage.
    const signal = c.req.raw.signal;
    const encoder = new TextEncoder();
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        const send = (obj: unknown) => controller.enqueue(encoder.encode(`data: ${JSON.stringify(obj)}\n\n`));
        const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
          send({ id, object: "chat.completion.chunk", created, model, choices, ...extra });
        try {
          chunk(
            outs.map((_, k) => ({
              index: k,
              delta: { role: "assistant", content: "" },
              logprobs: null,
              finish_reason: null,
            })),
            withIds ? { prompt_token_ids: promptIds } : {},
          );
          const longest = Math.max(...outs.map((o) => o.tokens.length));
          for (let i = 0; i < longest; i++) {
            if (options.tokenDelayMs) await sleep(options.tokenDelayMs);
            if (signal.aborted) throw new Error("client gone");
            for (const [k, o] of outs.entries()) {
              const t = o.tokens[i];
              if (t === undefined) continue;
              chunk([
                {
                  index: k,
                  delta: { content: t },
                  logprobs: top >= 0 ? { content: [logprobEntry(t, toyTokenId(t), i, top)] } : null,
                  finish_reason: null,
                  token_ids: withIds ? [toyTokenId(t)] : undefined,
                },
              ]);
            }
          }
          for (const [k, o] of outs.entries()) {
            chunk([{ index: k, delta: {}, logprobs: null, finish_reason: o.finish }]);
          }
          if (includeUsage) chunk([], { usage });
          controller.enqueue(encoder.encode("data: [DONE]\n\n"));
          controller.close();
        } catch {
          // The reader went away (request aborted, or the body was cancelled mid-write).
          stats.aborted++;
          try {
            controller.close();
          } catch {
            // Already cancelled.
          }
        }
      },
    });
    return new Response(stream, { headers: { "content-type": "text/event-stream" } });
  });

  app.post("/v1/completions", async (c) => {
    const body = (await c.req.json()) as Record<string, unknown>;
    stats.completionRequests++;
    stats.bodies.push(body);
    if (body.model !== model) return vllmError(c, 404, `The model \`${String(body.model)}\` does not exist.`);
    const raw = body.prompt as string | string[] | number[] | number[][];
    const prompts: (string | number[])[] =
      typeof raw === "string"
        ? [raw]
        : raw.every((p) => typeof p === "number")
          ? [raw as number[]]
          : (raw as (string | number[])[]);
    const n = (body.n as number | undefined) ?? 1;
    const maxTokens = (body.max_tokens as number | undefined) ?? 16;
    const stop = body.stop === undefined ? [] : typeof body.stop === "string" ? [body.stop] : (body.stop as string[]);
    const withIds = body.return_token_ids === true;
    const top = typeof body.logprobs === "number" ? body.logprobs : -1;
    const choices = prompts.flatMap((p, pi) => {
      const ids = toyPromptIds(p);
      const reply = typeof p === "string" ? ` and then${p.slice(-12)}` : ` after ${ids.length} tokens`;
      return Array.from({ length: n }, (_, k) => {
        const o = generate(k > 0 ? `${reply} #${k}` : reply, maxTokens, stop);
        return {
          index: pi * n + k,
          text: o.tokens.join(""),
          logprobs:
            top >= 0
              ? {
                  tokens: o.tokens,
                  token_logprobs: o.tokens.map((t, i) => toyLogprob(toyTokenId(t), i)),
                  top_logprobs: o.tokens.map((t, i) =>
                    Object.fromEntries(
                      Array.from({ length: top }, (_, j) => [
                        j === 0 ? t : `alt${j}`,
                        toyLogprob(toyTokenId(t), i) - j,
                      ]),
                    ),
                  ),
                  text_offset: [],
                }
              : null,
          finish_reason: o.finish,
          token_ids: withIds ? o.tokens.map(toyTokenId) : undefined,
          prompt_token_ids: withIds ? ids : undefined,
        };
      });
    });
    const promptTokens = prompts.reduce((s, p) => s + toyPromptIds(p).length, 0);
    const completionTokens = choices.reduce((s, ch) => s + toyTokenize(ch.text).length, 0);
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    const id = `cmpl-toy${stats.completionRequests}`;
    const created = Math.floor(Date.now() / 1000);
    if (body.stream !== true) return c.json({ id, object: "text_completion", created, model, choices, usage });
    const lines = choices.map((ch) => ({ id, object: "text_completion", created, model, choices: [ch] }));
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
      lines.push({ id, object: "text_completion", created, model, choices: [], usage } as never);
    }
    return new Response(`${lines.map((l) => `data: ${JSON.stringify(l)}\n\n`).join("")}data: [DONE]\n\n`, {
      headers: { "content-type": "text/event-stream" },
    });
  });
  return { app, stats };
}

export interface RunningUpstream {
  /** e.g. http://127.0.0.1:41234/v1 */
  baseURL: string;
  stats: UpstreamStats;
  close(): Promise<void>;
}

/** Serves the toy upstream on a free port of 127.0.0.1. */
export function startUpstreamServer(options: UpstreamServerOptions = {}): Promise<RunningUpstream> {
  const { app, stats } = createUpstreamApp(options);
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => {
      resolve({
        baseURL: `http://127.0.0.1:${info.port}/v1`,
        stats,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
  });
}
