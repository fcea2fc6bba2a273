// Request body limits for every route, enforced while the body streams in and before anything
// parses it: a declared Content-Length over the limit is refused unread; a chunked body is counted
// as it arrives and refused the moment it passes the limit; a gzip/deflate body is inflated as a
// stream whose output is counted the same way, so a small bomb cannot expand in memory. The
// checked (and decoded) bytes replace the request body, so handlers read it as usual.
import type { Context, MiddlewareHandler } from "hono";

export type LimitFailure =
  | { status: 413; code: "request_too_large"; message: string }
  | { status: 415; code: "unsupported_encoding"; message: string }
  | { status: 400; code: "invalid_encoding"; message: string };

export interface BodyLimitOptions {
  /** Largest body accepted, after decompression, in bytes (per path). */
  maxBytes: number | ((path: string) => number);
  /** Answers a refused body in the route's error shape. */
  answer: (c: Context, failure: LimitFailure) => Response;
}

const DECODINGS: Record<string, CompressionFormat> = { gzip: "gzip", "x-gzip": "gzip", deflate: "deflate" };

class Refused extends Error {
  constructor(readonly failure: LimitFailure) {
    super(failure.message);
  }
}

const tooLarge = (limit: number, decoded: boolean): Refused =>
  new Refused({
    status: 413,
    code: "request_too_large",
    message: decoded
      ? `Request body too large: it decompresses past the limit of ${limit} bytes.`
      : `Request body too large: the limit is ${limit} bytes.`,
  });

/** Reads a stream to its end, refusing it past `limit` bytes (the rest is never read). */
async function readAtMost(stream: ReadableStream<Uint8Array>, limit: number, decoded: boolean): Promise<Uint8Array> {
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (!decoded) throw error;
      throw new Refused({
        status: 400,
        code: "invalid_encoding",
        message: `The request body is not valid for its Content-Encoding: ${(error as Error).message}`,
      });
    }
    if (chunk.done) break;
    size += chunk.value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit, decoded);
    }
    parts.push(chunk.value);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** Middleware limiting request bodies (and their decompressed size) before any handler runs. */
export function bodyLimits(options: BodyLimitOptions): MiddlewareHandler {
  const limitFor = typeof options.maxBytes === "function" ? options.maxBytes : () => options.maxBytes as number;
  return async (c, next) => {
    const raw = c.req.raw;
    if (!raw.body || c.req.method === "GET" || c.req.method === "HEAD") return next();
    const limit = limitFor(c.req.path);
    const encoding = (raw.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
    const format = DECODINGS[encoding];
    if (!format && encoding !== "identity" && encoding !== "") {
      return options.answer(c, {
        status: 415,
        code: "unsupported_encoding",
        message: `Content-Encoding "${encoding}" is not supported: send gzip, deflate or an uncompressed body.`,
      });
    }
    const declared = Number(raw.headers.get("content-length") ?? Number.NaN);
    if (Number.isFinite(declared) && declared > limit) return options.answer(c, tooLarge(limit, false).failure);
    let bytes: Uint8Array;
    try {
      bytes = await readAtMost(raw.body, limit, false);
      if (format) {
        const inflated = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream(format));
        bytes = await readAtMost(inflated as ReadableStream<Uint8Array>, limit, true);
      }
    } catch (error) {
      if (error instanceof Refused) return options.answer(c, error.failure);
      throw error;
    }
    const headers = new Headers(raw.headers);
    headers.delete("content-encoding");
    headers.set("content-length", String(bytes.byteLength));
    c.req.raw = new Request(raw, { body: bytes as BodyInit, headers });
    return next();
  };
}
