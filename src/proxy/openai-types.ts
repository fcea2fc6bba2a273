// The OpenAI wire format the proxy speaks: zod schemas for the request bodies of
// `POST /v1/chat/completions` and `POST /v1/completions` (what a client may send, judged the way
// OpenAI judges it, unknown fields tolerated because SDKs send extras), and TypeScript types for
// the responses (ChatCompletion, ChatCompletionChunk, Completion, usage, logprobs) field for field
// as OpenAI returns them, so clients and SDKs parse our answers without special cases.
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Chat request

/** A text content part. Any other part type (image_url, input_audio, file) is refused. */
const contentPartSchema = z
  .looseObject({ type: z.string(), text: z.string().optional() })
  .superRefine((part, ctx) => {
    if (part.type !== "text") {
      ctx.addIssue({
        code: "custom",
        path: ["type"],
        message: `content parts of type ${JSON.stringify(part.type)} are not supported: this server serves text-only models, send {type:"text", text} parts or a string`,
      });
    } else if (typeof part.text !== "string") {
      ctx.addIssue({ code: "custom", path: ["text"], message: "a text content part needs a string `text`" });
    }
  })
  .transform((part) => ({ type: "text" as const, text: part.text ?? "" }));

const contentSchema = z.union([z.string(), z.array(contentPartSchema)]);

const toolCallSchema = z.looseObject({
  id: z.string(),
  type: z.literal("function").default("function"),
  function: z.looseObject({ name: z.string().min(1), arguments: z.string() }),
});

const systemMessageSchema = z.looseObject({
  role: z.literal("system"),
  content: contentSchema,
  name: z.string().optional(),
});
const developerMessageSchema = z.looseObject({
  role: z.literal("developer"),
  content: contentSchema,
  name: z.string().optional(),
});
const userMessageSchema = z.looseObject({
  role: z.literal("user"),
  content: contentSchema,
  name: z.string().optional(),
});
const assistantMessageSchema = z
  .looseObject({
    role: z.literal("assistant"),
    content: contentSchema.nullish(),
    name: z.string().optional(),
    tool_calls: z.array(toolCallSchema).optional(),
  })
  .refine((m) => (m.content !== undefined && m.content !== null) || (m.tool_calls?.length ?? 0) > 0, {
    message: "an assistant message needs `content` or `tool_calls`",
    path: ["content"],
  });
const toolMessageSchema = z.looseObject({
  role: z.literal("tool"),
  content: contentSchema,
  tool_call_id: z.string().min(1),
});

const messageByRole = {
  system: systemMessageSchema,
  developer: developerMessageSchema,
  user: userMessageSchema,
  assistant: assistantMessageSchema,
  tool: toolMessageSchema,
} as const;

const messageSchema = z.discriminatedUnion("role", [
  systemMessageSchema,
  developerMessageSchema,
  userMessageSchema,
  assistantMessageSchema,
  toolMessageSchema,
]);

/** A validated chat message (content parts are text-only after parsing). */
export type ChatMessageParam = z.output<typeof messageSchema>;

/** Validates `messages` one at a time so an issue's path names the message and field at fault. */
const messagesSchema = z
  .array(z.unknown())
  .min(1, "`messages` must contain at least one message")
  .transform((list, ctx) => {
    const out: ChatMessageParam[] = [];
    list.forEach((raw, i) => {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        ctx.addIssue({ code: "custom", message: "each message must be an object with a `role`", path: [i] });
        return;
      }
      const role = (raw as { role?: unknown }).role;
      if (typeof role !== "string" || !Object.hasOwn(messageByRole, role)) {
        const roles = Object.keys(messageByRole).map((r) => `'${r}'`);
        ctx.addIssue({
          code: "custom",
          message: `invalid role ${JSON.stringify(role)}: expected one of ${roles.join(", ")}`,
          path: [i, "role"],
        });
        return;
      }
      const parsed = messageByRole[role as keyof typeof messageByRole].safeParse(raw);
      if (!parsed.success) {
        // Re-raised whole (code, union branches) so error reporting can explain them.
        for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [i, ...issue.path] } as never);
        return;
      }
      out.push(parsed.data as ChatMessageParam);
    });
    return out;
  });

const functionToolSchema = z.looseObject({
  type: z.literal("function"),
  function: z.looseObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a function name must be 1-64 characters of a-z, A-Z, 0-9, _ or -"),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string().min(1) }) }),
]);

const responseFormatSchema = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("text") }),
  z.looseObject({ type: z.literal("json_object") }),
  z.looseObject({
    type: z.literal("json_schema"),
    json_schema: z.looseObject({
      name: z.string().min(1),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

const stopSchema = z.union([z.string(), z.array(z.string()).max(4, "`stop` may hold at most 4 sequences")]);

const positiveInt = z.number().int().min(1);

/** Nucleus mass: 0 would keep no token at all (OpenAI documents 0–1; engines need > 0). */
const topPSchema = z.number().gt(0, "`top_p` must be greater than 0 (1 keeps every token)").max(1);
/** vLLM extension; 0 or -1 = off. Bounded so it fits the engine's 32-bit parameter. */
const topKSchema = z
  .number()
  .int()
  .min(-1)
  .max(2 ** 31 - 1, "`top_k` must be at most 2147483647 (0 or -1 turns it off)");

/** `POST /v1/chat/completions` body. Unknown top-level fields are kept (see `extraFields`). */
const chatRequestShape = {
  model: z.string().min(1, "`model` must be a non-empty string"),
  messages: messagesSchema,
  n: z.number().int().min(1).max(128).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: topPSchema.nullish(),
  /** vLLM extension; 0 or -1 = off. */
  top_k: topKSchema.nullish(),
  max_tokens: positiveInt.nullish(),
  max_completion_tokens: positiveInt.nullish(),
  stop: stopSchema.nullish(),
  seed: z.number().int().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  tools: z.array(functionToolSchema).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: responseFormatSchema.nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  user: z.string().nullish(),
};

export const chatCompletionRequestSchema = z.looseObject(chatRequestShape).superRefine((body, ctx) => {
  if ((body.top_logprobs ?? 0) > 0 && body.logprobs !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["top_logprobs"],
      message: "`top_logprobs` needs `logprobs: true`",
    });
  }
  if (body.stream_options && body.stream !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["stream_options"],
      message: "`stream_options` is only allowed when `stream` is true",
    });
  }
  const choice = body.tool_choice;
  if (choice && choice !== "none" && !(body.tools && body.tools.length > 0)) {
    ctx.addIssue({
      code: "custom",
      path: ["tool_choice"],
      message: "`tool_choice` other than 'none' needs `tools`",
    });
  }
  if (typeof choice === "object" && choice && body.tools) {
    const name = choice.function.name;
    if (!body.tools.some((t) => t.function.name === name)) {
      ctx.addIssue({
        code: "custom",
        path: ["tool_choice", "function", "name"],
        message: `tool_choice names function ${JSON.stringify(name)}, which is not in \`tools\``,
      });
    }
  }
});

export type ChatCompletionRequestBody = z.output<typeof chatCompletionRequestSchema>;
export type ToolParam = z.output<typeof functionToolSchema>;
export type ToolChoiceParam = z.output<typeof toolChoiceSchema>;
export type ResponseFormatParam = z.output<typeof responseFormatSchema>;

// ---------------------------------------------------------------------------------------------
// Legacy completions request

const tokenArray = z.array(z.number().int().min(0));

/** `POST /v1/completions` body. */
const completionRequestShape = {
  model: z.string().min(1, "`model` must be a non-empty string"),
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1, "`prompt` must not be an empty list"),
    tokenArray.min(1, "`prompt` must not be an empty token list"),
    z.array(tokenArray.min(1, "a token-id prompt must not be empty")).min(1, "`prompt` must not be an empty list"),
  ]),
  max_tokens: positiveInt.nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: topPSchema.nullish(),
  top_k: topKSchema.nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stop: stopSchema.nullish(),
  seed: z.number().int().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  echo: z
    .boolean()
    .nullish()
    .refine((v) => v !== true, "`echo: true` is not supported"),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  suffix: z
    .string()
    .nullish()
    .refine((v) => !v, "`suffix` is not supported"),
  best_of: z
    .number()
    .int()
    .nullish()
    .refine((v) => v === null || v === undefined || v === 1, "`best_of` other than 1 is not supported"),
  user: z.string().nullish(),
};

export const completionRequestSchema = z.looseObject(completionRequestShape).superRefine((body, ctx) => {
  if (body.stream_options && body.stream !== true) {
    ctx.addIssue({
      code: "custom",
      path: ["stream_options"],
      message: "`stream_options` is only allowed when `stream` is true",
    });
  }
});

export type CompletionRequestBody = z.output<typeof completionRequestSchema>;

/** Top-level fields of a request body that the schema does not know (SDK extras, vLLM extensions). */
export function extraFields(body: Record<string, unknown>, kind: "chat" | "completion"): Record<string, unknown> {
  const known = kind === "chat" ? chatRequestShape : completionRequestShape;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) if (!Object.hasOwn(known, key)) out[key] = value;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Responses (OpenAI's shapes, snake_case as on the wire)

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** One alternative at a position: `bytes` are the token's UTF-8 bytes (null when unknown). */
export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

/** One sampled token with its log probability and the most likely alternatives. */
export interface ChatTokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface ChatChoiceLogprobs {
  content: ChatTokenLogprob[] | null;
  refusal: ChatTokenLogprob[] | null;
}

export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export type ChatFinishReason = "stop" | "length" | "tool_calls" | "content_filter" | "function_call";

export interface ChatCompletionMessage {
  role: "assistant";
  content: string | null;
  refusal: null;
  tool_calls?: ToolCallOut[];
}

export interface ChatCompletionChoice {
  index: number;
  message: ChatCompletionMessage;
  logprobs: ChatChoiceLogprobs | null;
  finish_reason: ChatFinishReason;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage: Usage;
  system_fingerprint: string | null;
}

/** A tool-call fragment of a streamed delta: the first for an index carries id, type and name. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function?: { name?: string; arguments?: string };
}

export interface ChatCompletionChunkDelta {
  role?: "assistant";
  content?: string | null;
  tool_calls?: ToolCallDelta[];
  refusal?: null;
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: ChatCompletionChunkDelta;
  logprobs: ChatChoiceLogprobs | null;
  finish_reason: ChatFinishReason | null;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  system_fingerprint: string | null;
  /** Present (null) on every chunk when `stream_options.include_usage`; set on the last one. */
  usage?: Usage | null;
}

/** Legacy completions logprobs: parallel arrays per token. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[] | null;
  text_offset: number[];
}

export interface CompletionChoice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  finish_reason: "stop" | "length" | null;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: Usage | null;
  system_fingerprint: string | null;
}

export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
}

export interface ModelList {
  object: "list";
  data: ModelObject[];
}
