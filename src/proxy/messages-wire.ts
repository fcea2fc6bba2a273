// Anthropic's Messages API wire format, mapped onto the proxy's own request and outcome types:
// the `POST /v1/messages` body (zod, judged the way Anthropic judges it, unknown fields tolerated)
// becomes a `ChatRequest` in OpenAI message terms (system → system message, tool_use → tool_calls,
// tool_result → tool messages, tool_choice any → "required"), so the same backends and recorder
// serve it; a `ChatOutcome` becomes a Message or its stream of events; errors take Anthropic's
// `{type: "error", error: {type, message}}` shape.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { ChatChoiceOutcome, ChatDelta, ChatOutcome, ChatRequest, ToolChoice } from "./backend.ts";
import { fromZodError, type ProxyError } from "./errors.ts";
import type { ChatMessageParam, ToolCallDelta, ToolParam } from "./openai-types.ts";

// ---------------------------------------------------------------------------------------------
// Request

const textBlockSchema = z.looseObject({ type: z.literal("text"), text: z.string() });
const toolUseBlockSchema = z.looseObject({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
});
const toolResultBlockSchema = z.looseObject({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.unknown())]).optional(),
  is_error: z.boolean().optional(),
});

type TextBlock = z.output<typeof textBlockSchema>;
type ToolUseBlock = z.output<typeof toolUseBlockSchema>;
type ToolResultBlock = z.output<typeof toolResultBlockSchema>;
type Block = TextBlock | ToolUseBlock | ToolResultBlock;

const BLOCKS_BY_ROLE = {
  user: { text: textBlockSchema, tool_result: toolResultBlockSchema },
  assistant: { text: textBlockSchema, tool_use: toolUseBlockSchema },
} as const;

type Issue = z.core.$ZodRawIssue;

/** Validates one content block for `role`, naming unsupported types (images, documents, thinking). */
function parseBlock(
  raw: unknown,
  role: "user" | "assistant",
  path: (string | number)[],
  addIssue: (issue: Issue) => void,
): Block | null {
  const type = typeof raw === "object" && raw !== null ? (raw as { type?: unknown }).type : undefined;
  const allowed = BLOCKS_BY_ROLE[role] as Record<string, z.ZodType<Block>>;
  if (typeof type !== "string" || !Object.hasOwn(allowed, type)) {
    const kinds = Object.keys(allowed).map((k) => `"${k}"`);
    addIssue({
      code: "custom",
      path: [...path, "type"],
      message:
        `content blocks of type ${JSON.stringify(type)} are not supported in ${role} messages here ` +
        `(this server serves text-only models with tools): use ${kinds.join(" or ")}`,
    } as Issue);
    return null;
  }
  const parsed = allowed[type].safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) addIssue({ ...issue, path: [...path, ...issue.path] } as Issue);
    return null;
  }
  if (parsed.data.type === "tool_result" && Array.isArray(parsed.data.content)) {
    parsed.data.content.forEach((inner, i) => {
      const r = textBlockSchema.safeParse(inner);
      if (!r.success) {
        addIssue({
          code: "custom",
          path: [...path, "content", i],
          message: 'tool_result content must be a string or a list of {type: "text", text} blocks',
        } as Issue);
      }
    });
  }
  return parsed.data;
}

const messageParamSchema = z.looseObject({
  role: z.enum(["user", "assistant"], {
    error: (issue) =>
      issue.input === "system"
        ? 'messages take the roles "user" and "assistant"; the system prompt is the top-level `system` field'
        : `invalid role ${JSON.stringify(issue.input)}: expected "user" or "assistant"`,
  }),
  content: z.union([z.string(), z.array(z.unknown())]),
});

interface AnthropicMessage {
  role: "user" | "assistant";
  content: string | Block[];
}

const messagesSchema = z
  .array(z.unknown())
  .min(1, "`messages` must contain at least one message")
  .transform((list, ctx) => {
    const out: AnthropicMessage[] = [];
    list.forEach((raw, i) => {
      const m = messageParamSchema.safeParse(raw);
      if (!m.success) {
        for (const issue of m.error.issues) ctx.addIssue({ ...issue, path: [i, ...issue.path] } as never);
        return;
      }
      const { role, content } = m.data;
      if (typeof content === "string") {
        out.push({ role, content });
        return;
      }
      const blocks: Block[] = [];
      content.forEach((b, j) => {
        const block = parseBlock(b, role, [i, "content", j], (issue) => ctx.addIssue(issue as never));
        if (block) blocks.push(block);
      });
      out.push({ role, content: blocks });
    });
    return out;
  });

const toolSchema = z.looseObject({
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a tool name must be 1-64 characters of a-z, A-Z, 0-9, _ or -"),
  description: z.string().optional(),
  input_schema: z.looseObject({ type: z.literal("object") }),
  type: z.literal("custom").optional(),
});

const toolChoiceSchema = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().optional() }),
  z.looseObject({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().optional() }),
  z.looseObject({
    type: z.literal("tool"),
    name: z.string().min(1),
    disable_parallel_tool_use: z.boolean().optional(),
  }),
  z.looseObject({ type: z.literal("none") }),
]);

export const messagesRequestSchema = z
  .looseObject({
    model: z.string().min(1, "`model` must be a non-empty string"),
    max_tokens: z.number().int().min(1),
    messages: messagesSchema,
    system: z.union([z.string(), z.array(textBlockSchema)]).optional(),
    tools: z.array(toolSchema).optional(),
    tool_choice: toolChoiceSchema.optional(),
    temperature: z.number().min(0).max(1).optional(),
    top_p: z.number().min(0).max(1).optional(),
    top_k: z.number().int().min(0).optional(),
    stop_sequences: z.array(z.string()).optional(),
    stream: z.boolean().optional(),
    metadata: z.looseObject({ user_id: z.string().nullish() }).optional(),
    thinking: z
      .looseObject({ type: z.string() })
      .optional()
      .refine((t) => t === undefined || t.type === "disabled", "extended thinking is not supported by this server"),
  })
  .superRefine((body, ctx) => {
    const choice = body.tool_choice;
    if (choice && choice.type !== "auto" && choice.type !== "none" && !(body.tools && body.tools.length > 0)) {
      ctx.addIssue({ code: "custom", path: ["tool_choice"], message: `tool_choice ${choice.type} needs \`tools\`` });
    }
    if (choice?.type === "tool" && !body.tools?.some((t) => t.name === choice.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["tool_choice", "name"],
        message: `tool_choice names tool ${JSON.stringify(choice.name)}, which is not in \`tools\``,
      });
    }
    const last = body.messages[body.messages.length - 1];
    if (last && last.role === "assistant") {
      ctx.addIssue({
        code: "custom",
        path: ["messages", body.messages.length - 1, "role"],
        message: "a final assistant message (prefill) is not supported by this server: end with a user message",
      });
    }
  });

export type MessagesRequestBody = z.output<typeof messagesRequestSchema>;

function joinText(blocks: { text: string }[]): string {
  return blocks.map((b) => b.text).join("\n");
}

function toolResultText(block: ToolResultBlock): string {
  const content = block.content;
  const text = content === undefined ? "" : typeof content === "string" ? content : joinText(content as TextBlock[]);
  // Chat templates have no error flag for tool output; the model reads it in the text.
  return block.is_error ? `Error: ${text}` : text;
}

/** Anthropic messages → OpenAI chat messages, block order kept. */
function toChatMessages(system: MessagesRequestBody["system"], messages: AnthropicMessage[]): ChatMessageParam[] {
  const out: ChatMessageParam[] = [];
  if (system !== undefined) {
    const text = typeof system === "string" ? system : joinText(system);
    if (text !== "") out.push({ role: "system", content: text });
  }
  for (const m of messages) {
    if (typeof m.content === "string") {
      out.push({ role: m.role, content: m.content } as ChatMessageParam);
      continue;
    }
    if (m.role === "assistant") {
      const text = joinText(m.content.filter((b): b is TextBlock => b.type === "text"));
      const calls = m.content
        .filter((b): b is ToolUseBlock => b.type === "tool_use")
        .map((b) => ({
          id: b.id,
          type: "function" as const,
          function: { name: b.name, arguments: JSON.stringify(b.input) },
        }));
      out.push({
        role: "assistant",
        content: text === "" && calls.length > 0 ? null : text,
        ...(calls.length > 0 ? { tool_calls: calls } : {}),
      } as ChatMessageParam);
      continue;
    }
    // A user turn: tool results become tool messages, runs of text user messages, in order.
    let pending: TextBlock[] = [];
    const flush = () => {
      if (pending.length > 0) out.push({ role: "user", content: joinText(pending) });
      pending = [];
    };
    for (const b of m.content) {
      if (b.type === "text") pending.push(b);
      else if (b.type === "tool_result") {
        flush();
        out.push({ role: "tool", tool_call_id: b.tool_use_id, content: toolResultText(b) });
      }
    }
    flush();
  }
  return out;
}

/**
 * Validates a Messages body and maps it onto a ChatRequest (one choice, Anthropic's defaults:
 * temperature 1, top_p/top_k off).
 * @throws ProxyError 400 naming the offending field.
 */
export function parseMessagesRequest(body: Record<string, unknown>): ChatRequest {
  const parsed = messagesRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error);
  const b = parsed.data;
  const tools: ToolParam[] | null =
    b.tools && b.tools.length > 0
      ? b.tools.map((t) => ({
          type: "function" as const,
          function: {
            name: t.name,
            ...(t.description !== undefined ? { description: t.description } : {}),
            parameters: t.input_schema,
          },
        }))
      : null;
  const choice = b.tool_choice;
  let toolChoice: ToolChoice = tools ? "auto" : "none";
  if (choice?.type === "any") toolChoice = "required";
  else if (choice?.type === "tool") toolChoice = { type: "function", function: { name: choice.name } };
  else if (choice?.type === "none") toolChoice = "none";
  const disableParallel = choice && "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use === true;
  return {
    model: b.model,
    messages: toChatMessages(b.system, b.messages),
    tools,
    toolChoice,
    parseToolCalls: tools !== null && toolChoice !== "none",
    parallelToolCalls: !disableParallel,
    responseFormat: { type: "text" },
    sampling: {
      n: 1,
      temperature: b.temperature ?? 1,
      topP: b.top_p ?? 1,
      topK: b.top_k ?? 0,
      maxTokens: b.max_tokens,
      stop: (b.stop_sequences ?? []).filter((s) => s !== ""),
      seed: null,
      logprobs: false,
      topLogprobs: 0,
      presencePenalty: 0,
      frequencyPenalty: 0,
    },
    stream: b.stream === true,
    includeUsage: false,
    user: b.metadata?.user_id ?? null,
    // Anthropic fields mean nothing to an OpenAI-compatible upstream: nothing is forwarded.
    extra: {},
  };
}

// ---------------------------------------------------------------------------------------------
// Responses

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "refusal";

export interface TextContent {
  type: "text";
  text: string;
}
export interface ToolUseContent {
  type: "tool_use";
  id: string;
  name: string;
  input: Record<string, unknown>;
}
export type ContentBlock = TextContent | ToolUseContent;

export interface MessageUsage {
  input_tokens: number;
  output_tokens: number;
}

export interface Message {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ContentBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: MessageUsage;
}

/** A fresh message id with Anthropic's prefix. */
export function newMessageId(): string {
  return `msg_${randomBytes(18).toString("base64url")}`;
}

/**
 * A tool call's `arguments` text as Anthropic's `input` object. Arguments that are not a JSON
 * object (a model writing a bare string) are kept whole under `arguments`, not dropped.
 */
export function toolInput(args: string): Record<string, unknown> {
  try {
    const value = JSON.parse(args === "" ? "{}" : args);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Not JSON: kept as text below.
  }
  return { arguments: args };
}

function stopOf(choice: ChatChoiceOutcome): { stop_reason: StopReason; stop_sequence: string | null } {
  switch (choice.finishReason) {
    case "tool_calls":
      return { stop_reason: "tool_use", stop_sequence: null };
    case "length":
      return { stop_reason: "max_tokens", stop_sequence: null };
    case "content_filter":
      return { stop_reason: "refusal", stop_sequence: null };
    default:
      return choice.stopSequence
        ? { stop_reason: "stop_sequence", stop_sequence: choice.stopSequence }
        : { stop_reason: "end_turn", stop_sequence: null };
  }
}

function usageOf(outcome: ChatOutcome): MessageUsage {
  return { input_tokens: outcome.usage.promptTokens, output_tokens: outcome.usage.completionTokens };
}

/** The non-streaming answer. */
export function messageBody(id: string, req: ChatRequest, outcome: ChatOutcome): Message {
  const choice = outcome.choices[0];
  const content: ContentBlock[] = [];
  if (choice.content) content.push({ type: "text", text: choice.content });
  for (const call of choice.toolCalls) {
    content.push({
      type: "tool_use",
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return {
    id,
    type: "message",
    role: "assistant",
    model: req.model,
    content,
    ...stopOf(choice),
    usage: usageOf(outcome),
  };
}

/** One server-sent event of a Messages stream: its `event:` name and JSON `data`. */
export interface MessageStreamEvent {
  event: string;
  data: Record<string, unknown> & { type: string };
}

/**
 * Turns backend deltas of one choice into Anthropic's event sequence: message_start, then per
 * content block content_block_start / deltas / content_block_stop (a ping after the first start),
 * then message_delta (stop_reason, usage) and message_stop. Tool input is sent whole as one
 * input_json_delta when its block closes, so it is always the same object as the non-streaming
 * answer would hold.
 */
export class MessageStreamer {
  private index = -1;
  private open: { kind: "text" } | { kind: "tool"; call: number; args: string } | null = null;
  private pinged = false;

  constructor(
    private readonly id: string,
    private readonly model: string,
  ) {}

  start(): MessageStreamEvent[] {
    return [
      {
        event: "message_start",
        data: {
          type: "message_start",
          message: {
            id: this.id,
            type: "message",
            role: "assistant",
            model: this.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            // The prompt's token count is known once generation ends: message_delta carries it.
            usage: { input_tokens: 0, output_tokens: 0 },
          },
        },
      },
    ];
  }

  private close(): MessageStreamEvent[] {
    if (!this.open) return [];
    const out: MessageStreamEvent[] = [];
    if (this.open.kind === "tool") {
      out.push({
        event: "content_block_delta",
        data: {
          type: "content_block_delta",
          index: this.index,
          delta: { type: "input_json_delta", partial_json: JSON.stringify(toolInput(this.open.args)) },
        },
      });
    }
    out.push({ event: "content_block_stop", data: { type: "content_block_stop", index: this.index } });
    this.open = null;
    return out;
  }

  private begin(block: ContentBlock, call = -1): MessageStreamEvent[] {
    const out = this.close();
    this.index++;
    out.push({
      event: "content_block_start",
      data: { type: "content_block_start", index: this.index, content_block: block },
    });
    if (!this.pinged) {
      this.pinged = true;
      out.push({ event: "ping", data: { type: "ping" } });
    }
    this.open = block.type === "text" ? { kind: "text" } : { kind: "tool", call, args: "" };
    return out;
  }

  delta(d: ChatDelta): MessageStreamEvent[] {
    const out: MessageStreamEvent[] = [];
    if (d.content) {
      if (this.open?.kind !== "text") out.push(...this.begin({ type: "text", text: "" }));
      out.push({
        event: "content_block_delta",
        data: { type: "content_block_delta", index: this.index, delta: { type: "text_delta", text: d.content } },
      });
    }
    for (const call of d.toolCalls ?? []) out.push(...this.toolDelta(call));
    return out;
  }

  private toolDelta(call: ToolCallDelta): MessageStreamEvent[] {
    const out: MessageStreamEvent[] = [];
    // A call's first fragment (a new OpenAI tool-call index) carries its id and name.
    if (this.open?.kind !== "tool" || this.open.call !== call.index) {
      const block: ContentBlock = { type: "tool_use", id: call.id ?? "", name: call.function?.name ?? "", input: {} };
      out.push(...this.begin(block, call.index));
    }
    if (this.open?.kind === "tool" && call.function?.arguments) this.open.args += call.function.arguments;
    return out;
  }

  finish(outcome: ChatOutcome): MessageStreamEvent[] {
    const out = this.close();
    if (!this.pinged) out.push({ event: "ping", data: { type: "ping" } });
    out.push(
      {
        event: "message_delta",
        data: { type: "message_delta", delta: stopOf(outcome.choices[0]), usage: usageOf(outcome) },
      },
      { event: "message_stop", data: { type: "message_stop" } },
    );
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

/** Anthropic's error type for an HTTP status. */
function anthropicErrorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503 || status === 529) return "overloaded_error";
  if (status === 504) return "timeout_error";
  if (status >= 500) return "api_error";
  return "invalid_request_error";
}

/** The body Anthropic would send for `err` (status and message kept, type in Anthropic's terms). */
export function anthropicErrorBody(err: ProxyError): AnthropicErrorBody {
  return { type: "error", error: { type: anthropicErrorType(err.status), message: err.message } };
}
