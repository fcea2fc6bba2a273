// The JSON form of transitions on the HTTP API: token ids and logprobs travel as base64 of the
// same little-endian bytes the database stores (compact, exact). Both the routes and HttpStore
// use these conversions, so the two sides cannot drift apart.
import { decodeLogprobs, decodeTokenIds, encodeLogprobs, encodeTokenIds, fromBase64, toBase64 } from "./blobs.ts";
import { StoreValidationError } from "./errors.ts";
import type { Transition, TransitionInput } from "./types.ts";

/** A transition as JSON: blob fields are base64 strings. */
export type WireTransition = Omit<Transition, "promptIds" | "responseIds" | "responseLogprobs"> & {
  promptIds: string;
  responseIds: string;
  responseLogprobs: string | null;
};

export function transitionToWire(t: Transition): WireTransition {
  return {
    ...t,
    promptIds: toBase64(t.promptIds),
    responseIds: toBase64(t.responseIds),
    responseLogprobs: t.responseLogprobs === null ? null : toBase64(t.responseLogprobs),
  };
}

export function transitionFromWire(w: WireTransition): Transition {
  return {
    ...w,
    promptIds: decodeTokenIds(fromBase64(w.promptIds)),
    responseIds: decodeTokenIds(fromBase64(w.responseIds)),
    responseLogprobs: w.responseLogprobs === null ? null : decodeLogprobs(fromBase64(w.responseLogprobs)),
  };
}

/** Client side: an already validated input with its arrays as base64. */
export function transitionInputToWire(t: TransitionInput): Record<string, unknown> {
  return {
    ...t,
    promptIds: toBase64(encodeTokenIds(t.promptIds)),
    responseIds: toBase64(encodeTokenIds(t.responseIds)),
    responseLogprobs: t.responseLogprobs == null ? t.responseLogprobs : toBase64(encodeLogprobs(t.responseLogprobs)),
  };
}

function decodeField(value: unknown, param: string, decode: (bytes: Buffer) => Uint32Array | Float32Array): unknown {
  // Plain JSON arrays are accepted too (handy for curl); the store validates them.
  if (typeof value !== "string") return value;
  try {
    return decode(fromBase64(value));
  } catch (error) {
    throw new StoreValidationError(
      `${param}: expected base64 of little-endian 4-byte values (${(error as Error).message})`,
      param,
    );
  }
}

/** Server side: decodes base64 blob fields of a received transition input. */
export function transitionInputFromWire(value: unknown, index: number): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const w = value as Record<string, unknown>;
  const at = `transitions[${index}]`;
  const out: Record<string, unknown> = { ...w };
  if ("promptIds" in w) out.promptIds = decodeField(w.promptIds, `${at}.promptIds`, decodeTokenIds);
  if ("responseIds" in w) out.responseIds = decodeField(w.responseIds, `${at}.responseIds`, decodeTokenIds);
  if (w.responseLogprobs != null) {
    out.responseLogprobs = decodeField(w.responseLogprobs, `${at}.responseLogprobs`, decodeLogprobs);
  }
  return out;
}
