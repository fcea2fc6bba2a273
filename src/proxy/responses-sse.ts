// The streamed form of a Responses API answer: backend chat deltas in, OpenAI's semantic events
// out, in the order the `openai` SDK's `ResponseStream` and other clients assemble them —
// `response.created`, `response.in_progress`, then per output item `output_item.added`, its
// content part / text deltas or function-call argument deltas, their `.done` events and
// `output_item.done`, and finally `response.completed` (or `response.incomplete` when the token
// limit cut the answer), every event numbered by `sequence_number`.
import type { ChatDelta, ChatOutcome } from "./backend.ts";
import {
  finishedResponse,
  newItemId,
  type ResponseFunctionCall,
  type ResponseLogprob,
  type ResponseObject,
  type ResponseOutputItem,
  type ResponseOutputMessage,
  type ResponseOutputText,
  type ResponsesRequest,
  toResponseLogprobs,
} from "./responses-api.ts";

/** One server-sent event: `type` is also its SSE `event:` name. */
export interface ResponseStreamEvent {
  type: string;
  sequence_number: number;
  [field: string]: unknown;
}

type OpenItem =
  | { kind: "message"; index: number; item: ResponseOutputMessage; text: string; logprobs: ResponseLogprob[] }
  | { kind: "function_call"; index: number; item: ResponseFunctionCall; toolIndex: number };

const copy = <T>(value: T): T => structuredClone(value);

/** Turns one streamed response into its events; `finish` returns the final `Response` too. */
export class ResponseEventStream {
  private sequence = 0;
  private readonly output: ResponseOutputItem[] = [];
  private open: OpenItem | null = null;
  private readonly skeleton: ResponseObject;
  private readonly req: ResponsesRequest;

  constructor(skeleton: ResponseObject, req: ResponsesRequest) {
    this.skeleton = skeleton;
    this.req = req;
  }

  private event(type: string, fields: Record<string, unknown>): ResponseStreamEvent {
    return { type, ...fields, sequence_number: this.sequence++ };
  }

  /** `response.created` and `response.in_progress`. */
  start(): ResponseStreamEvent[] {
    return [
      this.event("response.created", { response: copy(this.skeleton) }),
      this.event("response.in_progress", { response: copy(this.skeleton) }),
    ];
  }

  private openMessage(out: ResponseStreamEvent[]): Extract<OpenItem, { kind: "message" }> {
    if (this.open?.kind === "message") return this.open;
    this.closeOpen(out, "completed");
    const item: ResponseOutputMessage = {
      id: newItemId("msg"),
      type: "message",
      role: "assistant",
      status: "in_progress",
      content: [],
    };
    const open = { kind: "message" as const, index: this.output.length, item, text: "", logprobs: [] };
    this.output.push(item);
    this.open = open;
    out.push(this.event("response.output_item.added", { output_index: open.index, item: copy(item) }));
    const part: ResponseOutputText = { type: "output_text", text: "", annotations: [], logprobs: [] };
    out.push(
      this.event("response.content_part.added", { item_id: item.id, output_index: open.index, content_index: 0, part }),
    );
    return open;
  }

  /** Closes the item being streamed: its `.done` events, with the item as it ends. */
  private closeOpen(out: ResponseStreamEvent[], status: "completed" | "incomplete"): void {
    const open = this.open;
    if (!open) return;
    this.open = null;
    if (open.kind === "message") {
      const part: ResponseOutputText = {
        type: "output_text",
        text: open.text,
        annotations: [],
        logprobs: open.logprobs,
      };
      open.item.content = [part];
      open.item.status = status;
      const at = { item_id: open.item.id, output_index: open.index, content_index: 0 };
      out.push(this.event("response.output_text.done", { ...at, text: open.text, logprobs: copy(open.logprobs) }));
      out.push(this.event("response.content_part.done", { ...at, part: copy(part) }));
    } else {
      open.item.status = status;
      out.push(
        this.event("response.function_call_arguments.done", {
          item_id: open.item.id,
          output_index: open.index,
          name: open.item.name,
          arguments: open.item.arguments,
        }),
      );
    }
    out.push(this.event("response.output_item.done", { output_index: open.index, item: copy(open.item) }));
  }

  /** Events for one backend delta (none when it carries nothing a client sees). */
  delta(d: ChatDelta): ResponseStreamEvent[] {
    const out: ResponseStreamEvent[] = [];
    if (d.content) {
      const open = this.openMessage(out);
      const logprobs = this.req.logprobs
        ? toResponseLogprobs({ logprobs: d.logprobs ?? [] }, this.req.chat.sampling.topLogprobs)
        : [];
      open.text += d.content;
      open.logprobs.push(...logprobs);
      out.push(
        this.event("response.output_text.delta", {
          item_id: open.item.id,
          output_index: open.index,
          content_index: 0,
          delta: d.content,
          logprobs,
        }),
      );
    }
    for (const call of d.toolCalls ?? []) {
      let open = this.open?.kind === "function_call" && this.open.toolIndex === call.index ? this.open : null;
      if (!open) {
        this.closeOpen(out, "completed");
        const item: ResponseFunctionCall = {
          id: newItemId("fc"),
          type: "function_call",
          call_id: call.id ?? "",
          name: call.function?.name ?? "",
          arguments: "",
          status: "in_progress",
        };
        open = { kind: "function_call", index: this.output.length, item, toolIndex: call.index };
        this.output.push(item);
        this.open = open;
        out.push(this.event("response.output_item.added", { output_index: open.index, item: copy(item) }));
      }
      const args = call.function?.arguments ?? "";
      if (args !== "") {
        open.item.arguments += args;
        out.push(
          this.event("response.function_call_arguments.delta", {
            item_id: open.item.id,
            output_index: open.index,
            delta: args,
          }),
        );
      }
    }
    return out;
  }

  /**
   * Closes what is open and ends the stream with `response.completed` (`response.incomplete` when
   * the token limit cut the answer). An answer with no output at all still gets an empty message,
   * as the non-streaming body has.
   */
  finish(outcome: ChatOutcome): { events: ResponseStreamEvent[]; response: ResponseObject } {
    const out: ResponseStreamEvent[] = [];
    const truncated = outcome.choices[0]?.finishReason === "length";
    if (this.output.length === 0) this.openMessage(out);
    this.closeOpen(out, truncated ? "incomplete" : "completed");
    const response = finishedResponse(this.skeleton, this.output, outcome);
    out.push(
      this.event(truncated ? "response.incomplete" : "response.completed", {
        response: copy(response),
      }),
    );
    return { events: out, response };
  }
}
