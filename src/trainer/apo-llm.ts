// The optimiser LLM of prompt optimisation: one non-streaming chat completion against any
// OpenAI-compatible endpoint (Fulgur's own /v1, vLLM, Ollama, a hosted API), answered as text.
// Plain fetch, so the trainer needs no SDK and no proxy code.

import type { ChatMessage } from "./apo-prompts.ts";

export interface ChatEndpoint {
  /** Base URL with the version prefix, e.g. `http://127.0.0.1:8000/v1`. */
  baseURL: string;
  /** Sent as `Authorization: Bearer …` when given. */
  apiKey?: string;
  model: string;
  /** Longest wait for one answer, ms. Default 120 000. */
  timeoutMs?: number;
}

export interface ChatSampling {
  temperature: number;
  maxTokens: number;
  seed?: number;
}

/** Thrown when the endpoint cannot be reached or answers with an error. */
export class OptimizerLlmError extends Error {
  readonly status: number | null;
  constructor(message: string, status: number | null) {
    super(message);
    this.name = "OptimizerLlmError";
    this.status = status;
  }
}

/** Asks the endpoint for one answer; the text of its first choice ("" when it has none). */
export async function chatText(
  endpoint: ChatEndpoint,
  messages: ChatMessage[],
  sampling: ChatSampling,
): Promise<string> {
  const url = `${endpoint.baseURL.replace(/\/+$/, "")}/chat/completions`;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (endpoint.apiKey) headers.authorization = `Bearer ${endpoint.apiKey}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({
        model: endpoint.model,
        messages,
        temperature: sampling.temperature,
        max_tokens: sampling.maxTokens,
        ...(sampling.seed === undefined ? {} : { seed: sampling.seed }),
      }),
      signal: AbortSignal.timeout(endpoint.timeoutMs ?? 120_000),
    });
  } catch (err) {
    throw new OptimizerLlmError(`optimiser LLM at ${url} unreachable: ${(err as Error).message}`, null);
  }
  const body = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(body);
  } catch {
    // Reported below with the raw text.
  }
  if (!res.ok) {
    const message = (json as { error?: { message?: unknown } } | null)?.error?.message;
    throw new OptimizerLlmError(
      `optimiser LLM at ${url} answered ${res.status}: ${typeof message === "string" ? message : body.slice(0, 300)}`,
      res.status,
    );
  }
  const content = (json as { choices?: { message?: { content?: unknown } }[] } | null)?.choices?.[0]?.message?.content;
  if (json === null)
    throw new OptimizerLlmError(`optimiser LLM at ${url} answered non-JSON: ${body.slice(0, 300)}`, 200);
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p as { text?: string }).text ?? "").join("");
  return "";
}
