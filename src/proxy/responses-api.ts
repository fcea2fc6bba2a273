// OpenAI's Responses API (`POST /v1/responses`) on top of the chat pipeline: the request body is
// validated (zod, 400 with `param` on the first problem) and translated into the same normalised
// `ChatRequest` the chat route builds (input items → chat messages, `instructions` → a system
// message, Responses tools/tool_choice/text.format → their chat equivalents), so every backend,
// the constrained decoding of `responseFormat`/`toolChoice` and the recorder apply unchanged. It
// also owns the answer's shape (`Response` with message / function_call output items, as in the
// `openai` SDK's types) and `ResponseStore`, the bounded in-memory memory behind
// `previous_response_id`, `item_reference` and `GET /v1/responses/{id}`.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type {
  ChatChoiceOutcome,
  ChatOutcome,
  ChatRequest,
  SamplingRequest,
  ToolChoice,
  UsageCounts,
} from "./backend.ts";
import { fromZodError, invalidRequest, ProxyError } from "./errors.ts";
import type { ChatMessageParam, ResponseFormatParam, ToolCallOut, ToolParam } from "./openai-types.ts";

// ---------------------------------------------------------------------------------------------
// Request schema

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Content parts a text-only model can take; images, files and audio are refused. */
const TEXT_PART_TYPES = new Set(["input_text", "output_text", "text", "refusal"]);

const contentPartSchema = z
  .looseObject({ type: z.string(), text: z.string().optional(), refusal: z.string().optional() })
  .superRefine((part, ctx) => {
    if (!TEXT_PART_TYPES.has(part.type)) {
      ctx.addIssue({
        code: "custom",
        path: ["type"],
        message: `content parts of type ${JSON.stringify(part.type)} are not supported: this server serves text-only models, send input_text/output_text parts or a string`,
      });
    } else if (part.type === "refusal" ? typeof part.refusal !== "string" : typeof part.text !== "string") {
      ctx.addIssue({ code: "custom", path: ["text"], message: `a ${part.type} part needs a string \`text\`` });
    }
  })
  .transform((part) => (part.type === "refusal" ? (part.refusal ?? "") : (part.text ?? "")));

const contentSchema = z.union([z.string(), z.array(contentPartSchema)]);

const messageItemSchema = z.looseObject({
  type: z.literal("message").optional(),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: contentSchema,
});

const functionCallItemSchema = z.looseObject({
  type: z.literal("function_call"),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
  id: z.string().optional(),
});

const functionCallOutputItemSchema = z.looseObject({
  type: z.literal("function_call_output"),
  call_id: z.string().min(1),
  output: contentSchema,
});

const itemReferenceSchema = z.looseObject({ type: z.literal("item_reference"), id: z.string().min(1) });

/** Items the model never produces here; accepted and dropped (a text model reads no reasoning). */
const reasoningItemSchema = z.looseObject({ type: z.literal("reasoning") });

const ITEM_SCHEMAS = {
  message: messageItemSchema,
  function_call: functionCallItemSchema,
  function_call_output: functionCallOutputItemSchema,
  item_reference: itemReferenceSchema,
  reasoning: reasoningItemSchema,
} as const;

type InputItem =
  | ({ kind: "message" } & z.output<typeof messageItemSchema>)
  | ({ kind: "function_call" } & z.output<typeof functionCallItemSchema>)
  | ({ kind: "function_call_output" } & z.output<typeof functionCallOutputItemSchema>)
  | ({ kind: "item_reference" } & z.output<typeof itemReferenceSchema>)
  | { kind: "reasoning" };

/** Validates `input` item by item so an issue's path names the item and field at fault. */
const inputSchema = z.union([
  z.string(),
  z.array(z.unknown()).transform((list, ctx) => {
    const out: InputItem[] = [];
    list.forEach((raw, i) => {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        ctx.addIssue({ code: "custom", message: "each input item must be an object", path: [i] });
        return;
      }
      const declared = (raw as { type?: unknown }).type;
      // A bare {role, content} is a message (EasyInputMessage).
      const kind = declared === undefined && "role" in raw ? "message" : declared;
      if (typeof kind !== "string" || !Object.hasOwn(ITEM_SCHEMAS, kind)) {
        const known = Object.keys(ITEM_SCHEMAS).map((k) => `'${k}'`);
        ctx.addIssue({
          code: "custom",
          message: `input items of type ${JSON.stringify(declared)} are not supported: expected one of ${known.join(", ")}`,
          path: [i, "type"],
        });
        return;
      }
      const parsed = ITEM_SCHEMAS[kind as keyof typeof ITEM_SCHEMAS].safeParse(raw);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [i, ...issue.path] } as never);
        return;
      }
      out.push({ kind, ...parsed.data } as InputItem);
    });
    return out;
  }),
]);

const functionToolSchema = z.looseObject({
  type: z.literal("function"),
  name: z.string().regex(FUNCTION_NAME, "a function name must be 1-64 characters of a-z, A-Z, 0-9, _ or -"),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

const toolSchema = z
  .looseObject({ type: z.string() })
  .superRefine((tool, ctx) => {
    if (tool.type !== "function") {
      ctx.addIssue({
        code: "custom",
        path: ["type"],
        message: `tools of type ${JSON.stringify(tool.type)} are not supported: this server runs no hosted tools, only {type: "function"} tools`,
      });
    }
  })
  .pipe(functionToolSchema);

// The object branch first: error reporting explains the first union branch that got deeper.
const toolChoiceSchema = z.union([
  z
    .looseObject({ type: z.string(), name: z.string().optional() })
    .superRefine((choice, ctx) => {
      if (choice.type !== "function") {
        ctx.addIssue({
          code: "custom",
          path: ["type"],
          message: `tool_choice of type ${JSON.stringify(choice.type)} is not supported: use "none", "auto", "required" or {type: "function", name}`,
        });
      } else if (!choice.name) {
        ctx.addIssue({ code: "custom", path: ["name"], message: "a function tool_choice needs a `name`" });
      }
    })
    .transform((choice) => ({ type: "function" as const, name: choice.name ?? "" })),
  z.enum(["none", "auto", "required"]),
]);

const textFormatSchema = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({ type: z.literal("json_object") }),
  z.looseObject({
    type: z.literal("json_schema"),
    name: z.string().min(1),
    schema: z.record(z.string(), z.unknown()),
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  }),
]);

/** The values of `include` OpenAI accepts; only the logprobs one has an effect here. */
const INCLUDABLE = [
  "message.output_text.logprobs",
  "reasoning.encrypted_content",
  "file_search_call.results",
  "web_search_call.results",
  "web_search_call.action.sources",
  "message.input_image.image_url",
  "computer_call_output.output.image_url",
  "code_interpreter_call.outputs",
] as const;

const unsupported = (what: string) =>
  z
    .unknown()
    .optional()
    .refine((v) => v === undefined || v === null || v === false, `${what} is not supported by this server`);

const responsesRequestShape = {
  model: z.string().min(1, "`model` must be a non-empty string"),
  input: inputSchema,
  instructions: z.string().nullish(),
  tools: z.array(toolSchema).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  text: z.looseObject({ format: textFormatSchema.nullish(), verbosity: z.string().nullish() }).nullish(),
  include: z.array(z.enum(INCLUDABLE)).nullish(),
  stream: z.boolean().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().min(1).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  user: z.string().nullish(),
  safety_identifier: z.string().nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  background: unsupported("`background: true`"),
  conversation: unsupported("`conversation` (server-side conversations)"),
  prompt: unsupported("`prompt` (stored prompt templates)"),
};

const responsesRequestSchema = z.looseObject(responsesRequestShape).superRefine((body, ctx) => {
  const choice = body.tool_choice;
  const tools = body.tools ?? [];
  if (choice && choice !== "none" && tools.length === 0) {
    ctx.addIssue({ code: "custom", path: ["tool_choice"], message: "`tool_choice` other than 'none' needs `tools`" });
  }
  if (typeof choice === "object" && choice && !tools.some((t) => t.name === choice.name)) {
    ctx.addIssue({
      code: "custom",
      path: ["tool_choice", "name"],
      message: `tool_choice names function ${JSON.stringify(choice.name)}, which is not in \`tools\``,
    });
  }
  if (typeof body.input !== "string" && body.input.length === 0 && !body.previous_response_id) {
    ctx.addIssue({ code: "custom", path: ["input"], message: "`input` must contain at least one item" });
  }
});

type ResponsesBody = z.output<typeof responsesRequestSchema>;

// ---------------------------------------------------------------------------------------------
// Wire types of the answer (snake_case, as the `openai` SDK's `Response` declares them)

export interface ResponseLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export interface ResponseOutputText {
  type: "output_text";
  text: string;
  annotations: never[];
  logprobs: ResponseLogprob[];
}

export interface ResponseOutputMessage {
  id: string;
  type: "message";
  role: "assistant";
  status: "in_progress" | "completed" | "incomplete";
  content: ResponseOutputText[];
}

export interface ResponseFunctionCall {
  id: string;
  type: "function_call";
  call_id: string;
  name: string;
  arguments: string;
  status: "in_progress" | "completed" | "incomplete";
}

export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall;

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface ResponseFunctionTool {
  type: "function";
  name: string;
  description: string | null;
  parameters: Record<string, unknown> | null;
  strict: boolean | null;
}

export type ResponsesToolChoice = "none" | "auto" | "required" | { type: "function"; name: string };

export type ResponseTextFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; name: string; schema: Record<string, unknown>; description?: string; strict?: boolean };

export interface ResponseObject {
  id: string;
  object: "response";
  created_at: number;
  status: "in_progress" | "completed" | "incomplete";
  background: false;
  error: null;
  incomplete_details: { reason: "max_output_tokens" } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  max_tool_calls: null;
  model: string;
  output: ResponseOutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  service_tier: "default";
  store: boolean;
  temperature: number;
  text: { format: ResponseTextFormat };
  tool_choice: ResponsesToolChoice;
  tools: ResponseFunctionTool[];
  top_logprobs: number;
  top_p: number;
  truncation: "auto" | "disabled";
  usage: ResponseUsage | null;
  user: string | null;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Ids

/** A fresh id with one of the Responses API's prefixes (`resp_…`, `msg_…`, `fc_…`). */
export function newItemId(prefix: "resp" | "msg" | "fc"): string {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}

// ---------------------------------------------------------------------------------------------
// Stored responses

/** What a stored response contributes to a later request. */
interface StoredResponse {
  body: ResponseObject;
  /** The whole conversation up to and including this response's output, instructions excluded. */
  messages: ChatMessageParam[];
  /** Its size as JSON, what the byte budget counts. */
  bytes: number;
  /** The attempt whose token created it (only that token sees it), or null: any admin caller. */
  owner: string | null;
}

/** An output item as a later request's `item_reference` reads it. */
type StoredItem = { kind: "message"; text: string } | { kind: "function_call"; call: ToolCallOut };

export interface ResponseStoreOptions {
  /** Most responses kept (default 4096); 0 keeps none. */
  maxResponses?: number;
  /** Most bytes kept, counted as JSON (default 64 MiB); a larger single response is not kept. */
  maxBytes?: number;
}

/**
 * What one caller may reach of the stored responses: everything (the admin key, or no key), or
 * with an attempt token only what that attempt's own calls stored (`ResponseStore.view`).
 */
export interface ResponseStoreView {
  readonly maxResponses: number;
  readonly maxBytes: number;
  get(id: string): ResponseObject | null;
  conversation(id: string): readonly ChatMessageParam[] | null;
  item(id: string): StoredItem | null;
  delete(id: string): boolean;
  put(body: ResponseObject, inputMessages: readonly ChatMessageParam[]): boolean;
}

/**
 * Responses kept by id for `previous_response_id`, `item_reference` and `GET /v1/responses/{id}`.
 * In memory and bounded by count and bytes (oldest evicted first): agents that resend their
 * whole history on every step would otherwise grow it quadratically. They are conveniences for
 * clients that default to `store: true`, not training data (every call is recorded regardless).
 */
export class ResponseStore {
  private readonly responses = new Map<string, StoredResponse>();
  private readonly items = new Map<string, { item: StoredItem; owner: string | null }>();
  private totalBytes = 0;
  readonly maxResponses: number;
  readonly maxBytes: number;

  constructor(options: ResponseStoreOptions = {}) {
    this.maxResponses = options.maxResponses ?? 4096;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    for (const [name, value] of [
      ["maxResponses", this.maxResponses],
      ["maxBytes", this.maxBytes],
    ] as const) {
      if (!Number.isInteger(value) || value < 0)
        throw new Error(`ResponseStore: ${name} must be an integer ≥ 0, got ${value}`);
    }
  }

  get size(): number {
    return this.responses.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /**
   * The store as `viewer` may see it: null sees every response; an attempt id (a caller holding
   * that attempt's token) sees, continues and deletes only the responses its attempt stored.
   */
  view(viewer: string | null): ResponseStoreView {
    if (viewer === null) return this;
    return {
      maxResponses: this.maxResponses,
      maxBytes: this.maxBytes,
      get: (id) => this.get(id, viewer),
      conversation: (id) => this.conversation(id, viewer),
      item: (id) => this.item(id, viewer),
      delete: (id) => this.delete(id, viewer),
      put: (body, inputMessages) => this.put(body, inputMessages, viewer),
    };
  }

  private stored(id: string, viewer: string | null): StoredResponse | null {
    const stored = this.responses.get(id);
    return stored && (viewer === null || stored.owner === viewer) ? stored : null;
  }

  get(id: string, viewer: string | null = null): ResponseObject | null {
    return this.stored(id, viewer)?.body ?? null;
  }

  conversation(id: string, viewer: string | null = null): readonly ChatMessageParam[] | null {
    return this.stored(id, viewer)?.messages ?? null;
  }

  item(id: string, viewer: string | null = null): StoredItem | null {
    const kept = this.items.get(id);
    return kept && (viewer === null || kept.owner === viewer) ? kept.item : null;
  }

  delete(id: string, viewer: string | null = null): boolean {
    const stored = this.stored(id, viewer);
    if (!stored) return false;
    for (const item of stored.body.output) this.items.delete(item.id);
    this.totalBytes -= stored.bytes;
    return this.responses.delete(id);
  }

  /**
   * Keeps a finished response: its conversation (input + output) and its output items by id.
   * Returns false when it does not fit the byte budget on its own (it is then not kept).
   */
  put(body: ResponseObject, inputMessages: readonly ChatMessageParam[], owner: string | null = null): boolean {
    const messages = [...inputMessages];
    const items: [string, StoredItem][] = [];
    for (const item of body.output) {
      if (item.type === "message") {
        const text = item.content.map((c) => c.text).join("");
        items.push([item.id, { kind: "message", text }]);
        appendAssistantText(messages, text);
      } else {
        const call: ToolCallOut = {
          id: item.call_id,
          type: "function",
          function: { name: item.name, arguments: item.arguments },
        };
        items.push([item.id, { kind: "function_call", call }]);
        appendToolCall(messages, call);
      }
    }
    const bytes = JSON.stringify(messages).length + JSON.stringify(body).length;
    if (this.maxResponses === 0 || bytes > this.maxBytes) return false;
    while (this.responses.size >= this.maxResponses || this.totalBytes + bytes > this.maxBytes) {
      this.delete(this.responses.keys().next().value as string);
    }
    for (const [id, item] of items) this.items.set(id, { item, owner });
    this.responses.set(body.id, { body, messages, bytes, owner });
    this.totalBytes += bytes;
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Request → ChatRequest

/** A validated Responses request: the chat request a backend runs, plus what the answer echoes. */
export interface ResponsesRequest {
  chat: ChatRequest;
  /** The conversation without `instructions`, as a later `previous_response_id` continues it. */
  conversation: ChatMessageParam[];
  instructions: string | null;
  tools: ResponseFunctionTool[];
  toolChoice: ResponsesToolChoice;
  textFormat: ResponseTextFormat;
  maxOutputTokens: number | null;
  previousResponseId: string | null;
  store: boolean;
  truncation: "auto" | "disabled";
  metadata: Record<string, string>;
  /** `include` has `message.output_text.logprobs`. */
  logprobs: boolean;
}

function joinText(content: string | string[]): string {
  return typeof content === "string" ? content : content.join("");
}

function appendAssistantText(messages: ChatMessageParam[], text: string): void {
  messages.push({ role: "assistant", content: text } as ChatMessageParam);
}

/**
 * A function call joins the assistant turn it follows (text and calls of one answer are one
 * message). The message is replaced, never changed: stored conversations and recorded requests
 * share message objects.
 */
function appendToolCall(messages: ChatMessageParam[], call: ToolCallOut): void {
  const last = messages[messages.length - 1] as
    | { role: string; content?: unknown; tool_calls?: ToolCallOut[] }
    | undefined;
  if (last?.role === "assistant") {
    messages[messages.length - 1] = { ...last, tool_calls: [...(last.tool_calls ?? []), call] } as ChatMessageParam;
    return;
  }
  messages.push({ role: "assistant", content: null, tool_calls: [call] } as ChatMessageParam);
}

function itemsToMessages(items: InputItem[], store: ResponseStoreView): ChatMessageParam[] {
  const messages: ChatMessageParam[] = [];
  items.forEach((item, i) => {
    switch (item.kind) {
      case "message": {
        if (item.role === "assistant") appendAssistantText(messages, joinText(item.content));
        else if (typeof item.content === "string") {
          messages.push({ role: item.role, content: item.content } as ChatMessageParam);
        } else {
          const parts = item.content.map((text) => ({ type: "text" as const, text }));
          messages.push({ role: item.role, content: parts } as ChatMessageParam);
        }
        return;
      }
      case "function_call":
        appendToolCall(messages, {
          id: item.call_id,
          type: "function",
          function: { name: item.name, arguments: item.arguments },
        });
        return;
      case "function_call_output":
        messages.push({ role: "tool", tool_call_id: item.call_id, content: joinText(item.output) } as ChatMessageParam);
        return;
      case "item_reference": {
        const stored = store.item(item.id);
        if (!stored) {
          throw new ProxyError(
            400,
            `Item with id '${item.id}' not found. Items can be referenced only while the response that produced them is stored (store: true, this server's memory).`,
            { param: `input[${i}].id`, code: "item_not_found" },
          );
        }
        if (stored.kind === "message") appendAssistantText(messages, stored.text);
        else appendToolCall(messages, stored.call);
        return;
      }
      case "reasoning":
        return;
    }
  });
  return messages;
}

function toChatToolChoice(choice: ResponsesToolChoice): ToolChoice {
  return typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } };
}

function toChatResponseFormat(format: ResponseTextFormat): ResponseFormatParam {
  if (format.type !== "json_schema") return { type: format.type };
  return {
    type: "json_schema",
    json_schema: {
      name: format.name,
      schema: format.schema,
      ...(format.description !== undefined ? { description: format.description } : {}),
      ...(format.strict !== undefined ? { strict: format.strict } : {}),
    },
  };
}

function toTextFormat(format: NonNullable<NonNullable<ResponsesBody["text"]>["format"]>): ResponseTextFormat {
  if (format.type !== "json_schema") return { type: format.type };
  return {
    type: "json_schema",
    name: format.name,
    schema: format.schema,
    ...(format.description != null ? { description: format.description } : {}),
    ...(format.strict != null ? { strict: format.strict } : {}),
  };
}

/**
 * Validates a `POST /v1/responses` body and translates it into the chat request the backends run.
 * @throws ProxyError 400 naming the offending field, or an unknown `previous_response_id` / item.
 */
export function parseResponsesRequest(body: Record<string, unknown>, store: ResponseStoreView): ResponsesRequest {
  const parsed = responsesRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  const b = parsed.data;

  let conversation: ChatMessageParam[] = [];
  const previousResponseId = b.previous_response_id ?? null;
  if (previousResponseId) {
    const previous = store.conversation(previousResponseId);
    if (!previous) {
      throw new ProxyError(
        400,
        `Previous response with id '${previousResponseId}' not found. This server keeps the latest responses created with store: true in memory (up to ${store.maxResponses} responses, ${store.maxBytes} bytes), not across restarts.`,
        { param: "previous_response_id", code: "previous_response_not_found" },
      );
    }
    conversation = [...previous];
  }
  const items: InputItem[] =
    typeof b.input === "string" ? [{ kind: "message", role: "user", content: b.input }] : b.input;
  conversation.push(...itemsToMessages(items, store));
  if (conversation.length === 0) throw invalidRequest("`input` must contain at least one item", "input");

  const instructions = b.instructions ?? null;
  const messages: ChatMessageParam[] = instructions
    ? [{ role: "system", content: instructions } as ChatMessageParam, ...conversation]
    : [...conversation];

  const tools: ResponseFunctionTool[] = (b.tools ?? []).map((t) => ({
    type: "function",
    name: t.name,
    description: t.description ?? null,
    parameters: (t.parameters ?? null) as Record<string, unknown> | null,
    strict: t.strict ?? null,
  }));
  const chatTools: ToolParam[] | null =
    tools.length > 0
      ? tools.map((t) => ({
          type: "function" as const,
          function: {
            name: t.name,
            ...(t.description !== null ? { description: t.description } : {}),
            ...(t.parameters !== null ? { parameters: t.parameters } : {}),
            ...(t.strict !== null ? { strict: t.strict } : {}),
          },
        }))
      : null;
  const toolChoice: ResponsesToolChoice =
    (b.tool_choice as ResponsesToolChoice | null) ?? (chatTools ? "auto" : "none");
  const chatToolChoice = toChatToolChoice(toolChoice);
  const textFormat: ResponseTextFormat = b.text?.format ? toTextFormat(b.text.format) : { type: "text" };
  const logprobs = b.include?.includes("message.output_text.logprobs") ?? false;

  const sampling: SamplingRequest = {
    n: 1,
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? 1,
    topK: 0,
    maxTokens: b.max_output_tokens ?? null,
    stop: [],
    seed: null,
    logprobs,
    topLogprobs: logprobs ? (b.top_logprobs ?? 0) : 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
  };
  const chat: ChatRequest = {
    model: b.model,
    messages,
    tools: chatTools,
    toolChoice: chatToolChoice,
    parseToolCalls: chatTools !== null && chatToolChoice !== "none",
    parallelToolCalls: b.parallel_tool_calls ?? true,
    responseFormat: toChatResponseFormat(textFormat),
    sampling,
    stream: b.stream === true,
    includeUsage: false,
    user: b.user ?? b.safety_identifier ?? null,
    // Responses-only fields (store, include, text…) mean nothing to a chat upstream: none forwarded.
    extra: {},
  };
  return {
    chat,
    conversation,
    instructions,
    tools,
    toolChoice,
    textFormat,
    maxOutputTokens: b.max_output_tokens ?? null,
    previousResponseId,
    store: b.store ?? true,
    truncation: b.truncation ?? "disabled",
    metadata: b.metadata ?? {},
    logprobs,
  };
}

// ---------------------------------------------------------------------------------------------
// Outcome → Response

export function toResponseUsage(u: UsageCounts): ResponseUsage {
  return {
    input_tokens: u.promptTokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: u.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.totalTokens,
  };
}

/** Logprobs in the Responses shape (bytes are never null there: unknown bytes become []). */
export function toResponseLogprobs(choice: Pick<ChatChoiceOutcome, "logprobs">, topN: number): ResponseLogprob[] {
  return (choice.logprobs ?? []).map((lp) => ({
    token: lp.token,
    logprob: lp.logprob,
    bytes: lp.bytes ?? [],
    top_logprobs: lp.top.slice(0, topN).map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes ?? [] })),
  }));
}

/** The `Response` object before any output: what `response.created` carries. */
export function responseSkeleton(id: string, createdAt: number, req: ResponsesRequest): ResponseObject {
  return {
    id,
    object: "response",
    created_at: createdAt,
    status: "in_progress",
    background: false,
    error: null,
    incomplete_details: null,
    instructions: req.instructions,
    max_output_tokens: req.maxOutputTokens,
    max_tool_calls: null,
    model: req.chat.model,
    output: [],
    parallel_tool_calls: req.chat.parallelToolCalls,
    previous_response_id: req.previousResponseId,
    reasoning: { effort: null, summary: null },
    service_tier: "default",
    store: req.store,
    temperature: req.chat.sampling.temperature,
    text: { format: req.textFormat },
    tool_choice: req.toolChoice,
    tools: req.tools,
    top_logprobs: req.chat.sampling.topLogprobs,
    top_p: req.chat.sampling.topP,
    truncation: req.truncation,
    usage: null,
    user: req.chat.user,
    metadata: req.metadata,
  };
}

/** The finished `Response`: status from the finish reason, usage from the outcome. */
export function finishedResponse(
  skeleton: ResponseObject,
  output: ResponseOutputItem[],
  outcome: ChatOutcome,
): ResponseObject {
  const truncated = outcome.choices[0]?.finishReason === "length";
  return {
    ...skeleton,
    status: truncated ? "incomplete" : "completed",
    incomplete_details: truncated ? { reason: "max_output_tokens" } : null,
    output,
    usage: toResponseUsage(outcome.usage),
  };
}

/**
 * The output items of a finished choice: a message with its text (when there is text, or when
 * there is nothing else, so `output_text` is always readable), then one `function_call` per call.
 */
export function outputItems(req: ResponsesRequest, choice: ChatChoiceOutcome): ResponseOutputItem[] {
  const items: ResponseOutputItem[] = [];
  const truncated = choice.finishReason === "length";
  if (choice.content !== null || choice.toolCalls.length === 0) {
    items.push({
      id: newItemId("msg"),
      type: "message",
      role: "assistant",
      status: truncated ? "incomplete" : "completed",
      content: [
        {
          type: "output_text",
          text: choice.content ?? "",
          annotations: [],
          logprobs: req.logprobs ? toResponseLogprobs(choice, req.chat.sampling.topLogprobs) : [],
        },
      ],
    });
  }
  for (const call of choice.toolCalls) {
    items.push({
      id: newItemId("fc"),
      type: "function_call",
      call_id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
      status: "completed",
    });
  }
  return items;
}

/** The non-streaming answer. */
export function responseBody(
  id: string,
  createdAt: number,
  req: ResponsesRequest,
  outcome: ChatOutcome,
): ResponseObject {
  const choice = outcome.choices[0];
  const output = choice ? outputItems(req, choice) : [];
  return finishedResponse(responseSkeleton(id, createdAt, req), output, outcome);
}
