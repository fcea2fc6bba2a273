// Tool calls out of model text, the way vLLM's Hermes parser reads Qwen2.5/Hermes-style output:
// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one or several. The whole-text
// parser (`parseToolCalls`) serves non-streaming answers; `StreamingToolCallParser` turns text
// deltas into OpenAI's streaming delta shape, holding back only what might be the start of a tag.
import { randomBytes } from "node:crypto";
import type { ToolCallDelta, ToolCallOut } from "./openai-types.ts";

export const TOOL_CALL_OPEN = "<tool_call>";
export const TOOL_CALL_CLOSE = "</tool_call>";

/** A fresh OpenAI-style tool call id (`call_` + 24 url-safe characters). */
export function newToolCallId(): string {
  return `call_${randomBytes(18).toString("base64url")}`;
}

export interface ParsedToolCalls {
  /** Text before the first `<tool_call>` (null when empty or whitespace only), or the whole text. */
  content: string | null;
  toolCalls: ToolCallOut[];
}

/**
 * Reads one call body (the JSON between the tags). Returns null when it is not a JSON object with
 * a string `name`: the caller then keeps the text as content instead of failing the request.
 * `arguments` objects are serialised (unicode kept as is, like vLLM's `ensure_ascii=False`); an
 * `arguments` string is passed through, a missing one becomes "{}".
 */
export function parseToolCallBody(body: string): { name: string; arguments: string } | null {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { name, arguments: args, parameters } = value as { name?: unknown; arguments?: unknown; parameters?: unknown };
  if (typeof name !== "string" || name === "") return null;
  // Some Hermes fine-tunes write "parameters" instead of "arguments".
  const raw = args ?? parameters;
  if (raw === undefined || raw === null) return { name, arguments: "{}" };
  return { name, arguments: typeof raw === "string" ? raw : JSON.stringify(raw) };
}

/**
 * Finds where a call body ends: the first `</tool_call>` outside a JSON string. The tag inside a
 * string is argument text, not the end of the call: a constrained tool call (its arguments follow
 * the schema, any string allowed) can write it there, and a model trained to close its calls
 * with the tag often does. Keeps its state between `find` calls so a stream is scanned once.
 */
class CallEndScanner {
  private inString = false;
  private escaped = false;
  /** Where the next `find` resumes. */
  pos = 0;

  /**
   * Index of the closing tag in `text` at or after `pos`, or -1 when there is none yet (`pos`
   * then stops before a tag that may be cut at the end of `text`).
   */
  find(text: string): number {
    for (let i = this.pos; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === 0x5c) this.escaped = true;
        else if (ch === 0x22) this.inString = false;
      } else if (ch === 0x22) {
        this.inString = true;
      } else if (ch === 0x3c) {
        if (text.startsWith(TOOL_CALL_CLOSE, i)) {
          this.pos = i;
          return i;
        }
        if (text.length - i < TOOL_CALL_CLOSE.length && TOOL_CALL_CLOSE.startsWith(text.slice(i))) {
          this.pos = i;
          return -1;
        }
      }
    }
    this.pos = text.length;
    return -1;
  }
}

/**
 * Parses tool calls out of a finished model output. Text without `<tool_call>` is all content.
 * Text after the first tag that is not inside a call is dropped (as vLLM does). A call ends at the
 * first `</tool_call>` outside its JSON strings (vLLM's first `</tool_call>` would cut a call whose
 * argument contains the tag). If any call's JSON is malformed the whole text is returned as
 * content and no calls: the client then sees what the model wrote rather than an error. A final
 * tag left unclosed (generation stopped at EOS or at `</tool_call>` as a stop string) is still read.
 */
export function parseToolCalls(text: string, makeId: () => string = newToolCallId): ParsedToolCalls {
  const first = text.indexOf(TOOL_CALL_OPEN);
  if (first < 0) return { content: text, toolCalls: [] };
  const bodies: string[] = [];
  let at = first;
  while (at >= 0) {
    const scanner = new CallEndScanner();
    scanner.pos = at + TOOL_CALL_OPEN.length;
    const close = scanner.find(text);
    if (close < 0) {
      bodies.push(text.slice(at + TOOL_CALL_OPEN.length));
      break;
    }
    bodies.push(text.slice(at + TOOL_CALL_OPEN.length, close));
    at = text.indexOf(TOOL_CALL_OPEN, close + TOOL_CALL_CLOSE.length);
  }
  const toolCalls: ToolCallOut[] = [];
  for (const body of bodies) {
    const call = parseToolCallBody(body);
    if (!call) return { content: text, toolCalls: [] };
    toolCalls.push({ id: makeId(), type: "function", function: call });
  }
  const before = text.slice(0, first);
  return { content: before.trim() === "" ? null : before, toolCalls };
}

/** What one `push`/`finish` of the streaming parser produced. */
export interface ToolCallStreamOutput {
  /** Content text to send now ("" when none). */
  content: string;
  /** Tool call deltas to send now, in OpenAI's streaming shape. */
  toolCalls: ToolCallDelta[];
}

/** Length of the longest suffix of `text` that is a proper prefix of `tag`. */
function partialTagSuffix(text: string, tag: string): number {
  const max = Math.min(text.length, tag.length - 1);
  for (let len = max; len > 0; len--) {
    if (text.endsWith(tag.slice(0, len))) return len;
  }
  return 0;
}

/**
 * Streaming Hermes parser. Content flows through until a `<tool_call>` begins (a partial tag at
 * the end of a delta is held back until the next delta decides it); each call is emitted once its
 * closing tag arrives outside the call's JSON strings, as two deltas:
 * `{index, id, type, function: {name, arguments: ""}}` then `{index, function: {arguments}}`.
 * After the first tag, text outside calls is dropped, matching `parseToolCalls`. A call whose
 * JSON is malformed is sent as content (its tags included), since text already streamed cannot
 * be taken back.
 */
export class StreamingToolCallParser {
  private buffer = "";
  private inCall = false;
  private sawCall = false;
  private nextIndex = 0;
  private scanner = new CallEndScanner();
  private readonly makeId: () => string;

  constructor(makeId: () => string = newToolCallId) {
    this.makeId = makeId;
  }

  /** Number of tool calls emitted so far. */
  get toolCallCount(): number {
    return this.nextIndex;
  }

  /** Feeds the next text delta. */
  push(delta: string): ToolCallStreamOutput {
    this.buffer += delta;
    const out: ToolCallStreamOutput = { content: "", toolCalls: [] };
    for (;;) {
      if (this.inCall) {
        const close = this.scanner.find(this.buffer);
        if (close < 0) return out;
        this.emitCall(this.buffer.slice(0, close), true, out);
        this.buffer = this.buffer.slice(close + TOOL_CALL_CLOSE.length);
        this.inCall = false;
        continue;
      }
      const open = this.buffer.indexOf(TOOL_CALL_OPEN);
      if (open >= 0) {
        if (!this.sawCall) out.content += this.buffer.slice(0, open);
        this.buffer = this.buffer.slice(open + TOOL_CALL_OPEN.length);
        this.scanner = new CallEndScanner();
        this.inCall = true;
        this.sawCall = true;
        continue;
      }
      const hold = partialTagSuffix(this.buffer, TOOL_CALL_OPEN);
      if (!this.sawCall) out.content += this.buffer.slice(0, this.buffer.length - hold);
      this.buffer = this.buffer.slice(this.buffer.length - hold);
      return out;
    }
  }

  /** Ends the stream: flushes held-back text and reads a final unclosed call. */
  finish(): ToolCallStreamOutput {
    const out: ToolCallStreamOutput = { content: "", toolCalls: [] };
    if (this.inCall) this.emitCall(this.buffer, false, out);
    else if (!this.sawCall) out.content = this.buffer;
    this.buffer = "";
    this.inCall = false;
    return out;
  }

  private emitCall(body: string, closed: boolean, out: ToolCallStreamOutput): void {
    const call = parseToolCallBody(body);
    if (!call) {
      out.content += `${TOOL_CALL_OPEN}${body}${closed ? TOOL_CALL_CLOSE : ""}`;
      return;
    }
    const index = this.nextIndex++;
    out.toolCalls.push(
      { index, id: this.makeId(), type: "function", function: { name: call.name, arguments: "" } },
      { index, function: { arguments: call.arguments } },
    );
  }
}

/**
 * Collects streamed tool-call deltas (ours or an upstream's) into complete calls: the first delta
 * of an index brings id/type/name, later ones append to `arguments`.
 */
export class ToolCallAssembler {
  private readonly calls = new Map<number, ToolCallOut>();

  add(deltas: readonly ToolCallDelta[]): void {
    for (const d of deltas) {
      let call = this.calls.get(d.index);
      if (!call) {
        call = { id: d.id ?? newToolCallId(), type: "function", function: { name: "", arguments: "" } };
        this.calls.set(d.index, call);
      } else if (d.id) {
        call.id = d.id;
      }
      if (d.function?.name) call.function.name += d.function.name;
      if (d.function?.arguments) call.function.arguments += d.function.arguments;
    }
  }

  /** The calls so far, ordered by index. */
  result(): ToolCallOut[] {
    return [...this.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, call]) => call);
  }
}
