// Chat templates: turns OpenAI-shaped chat messages into the prompt string a model was trained on,
// by rendering the checkpoint's Jinja `chat_template` the way transformers' apply_chat_template
// does (same variables, trim_blocks/lstrip_blocks, tools as JSON-schema dicts). Also ships the
// Qwen2.5-Instruct ChatML template (with tool calling) that our own tiny models use.
import { Template } from "@huggingface/jinja";

/** A text part of OpenAI's content-parts form. Other part types are not text and are rejected. */
export interface TextContentPart {
  type: "text";
  text: string;
}

/** An OpenAI tool call as it appears on an assistant message. */
export interface ToolCall {
  id?: string;
  type?: "function";
  function: { name: string; arguments: string | Record<string, unknown> };
}

/** A chat message in OpenAI's shape. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  content?: string | TextContentPart[] | null;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  name?: string;
}

/** A tool in OpenAI's shape ({type:"function", function:{...}}) or the bare function schema. */
export type ToolSpec =
  | { type: "function"; function: { name: string; description?: string; parameters?: unknown } }
  | { name: string; description?: string; parameters?: unknown };

export interface RenderOptions {
  tools?: ToolSpec[] | null;
  addGenerationPrompt?: boolean;
  bosToken?: string | null;
  eosToken?: string | null;
  /** Further template variables (e.g. special tokens, documents, enable_thinking). */
  extra?: Record<string, unknown>;
}

function contentToString(content: ChatMessage["content"], index: number): string | null {
  if (content === undefined || content === null) return null;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw new Error(`messages[${index}].content must be a string, null, or a list of text parts`);
  }
  const texts = content.map((part, j) => {
    if (part?.type !== "text" || typeof part.text !== "string") {
      throw new Error(
        `messages[${index}].content[${j}] has type ${JSON.stringify(part?.type)}; only {type:"text", text} parts are supported`,
      );
    }
    return part.text;
  });
  // Text-only models see content parts joined by newlines (vLLM's "string" content format).
  return texts.join("\n");
}

/**
 * Converts OpenAI-shaped messages into what HF templates expect: content parts joined into one
 * string, and tool-call `arguments` JSON strings parsed into objects (templates such as Qwen's
 * render `arguments | tojson`, which would otherwise double-encode). Arguments that are not a JSON
 * object are left as the original string.
 */
export function toTemplateMessages(messages: ChatMessage[]): Record<string, unknown>[] {
  if (!Array.isArray(messages)) throw new Error("messages must be an array of chat messages");
  return messages.map((m, i) => {
    if (typeof m !== "object" || m === null || typeof m.role !== "string") {
      throw new Error(`messages[${i}] must be an object with a string "role"`);
    }
    const out: Record<string, unknown> = { ...m, content: contentToString(m.content, i) };
    if (m.tool_calls !== undefined) {
      if (!Array.isArray(m.tool_calls)) throw new Error(`messages[${i}].tool_calls must be an array`);
      out.tool_calls = m.tool_calls.map((call, j) => {
        if (typeof call?.function?.name !== "string") {
          throw new Error(`messages[${i}].tool_calls[${j}].function.name must be a string`);
        }
        return { ...call, function: { ...call.function, arguments: parseArguments(call.function.arguments) } };
      });
    }
    return out;
  });
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== "string") return args ?? {};
  try {
    const parsed = JSON.parse(args);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? parsed : args;
  } catch {
    return args;
  }
}

/** Tools as HF passes them to templates: a list of {type:"function", function:{...}} dicts. */
export function toTemplateTools(tools: ToolSpec[]): Record<string, unknown>[] {
  if (!Array.isArray(tools)) throw new Error("tools must be an array");
  return tools.map((t, i) => {
    if ("function" in t && typeof t.function === "object" && t.function !== null) return { ...t };
    if ("name" in t && typeof t.name === "string") return { type: "function", function: { ...t } };
    throw new Error(`tools[${i}] must be {type:"function", function:{name,...}} or a function schema with a name`);
  });
}

const compiled = new Map<string, Template>();

/**
 * Renders a Jinja chat template with transformers' variables: messages, tools (null when none),
 * add_generation_prompt, bos_token, eos_token, plus `extra`. `raise_exception` and
 * `strftime_now` are provided by the Jinja runtime.
 */
export function renderChatTemplate(template: string, messages: ChatMessage[], options: RenderOptions = {}): string {
  let tpl = compiled.get(template);
  if (!tpl) {
    tpl = new Template(template);
    compiled.set(template, tpl);
  }
  const tools = options.tools && options.tools.length > 0 ? toTemplateTools(options.tools) : null;
  return tpl.render({
    ...options.extra,
    messages: toTemplateMessages(messages),
    tools,
    add_generation_prompt: options.addGenerationPrompt ?? false,
    bos_token: options.bosToken ?? "",
    eos_token: options.eosToken ?? "",
  });
}

/**
 * The chat template of Qwen2.5-Instruct (tokenizer_config.json `chat_template`): ChatML with a
 * default system prompt, tools listed as JSON inside <tools></tools>, assistant tool calls as
 * <tool_call>{"name", "arguments"}</tool_call>, and consecutive tool results merged into one user
 * turn of <tool_response> blocks.
 */
export const QWEN2_5_CHAT_TEMPLATE = String.raw`{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
`;

/**
 * The chat template of Qwen3 (tokenizer_config.json `chat_template`): ChatML without a default
 * system prompt, the same tool format as Qwen2.5, assistant reasoning as <think>…</think> kept only
 * after the last user query (from `reasoning_content` or parsed out of the content), and
 * `enable_thinking: false` pre-filling an empty think block.
 */
export const QWEN3_CHAT_TEMPLATE = String.raw`{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}`;
