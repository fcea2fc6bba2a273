// Byte-bounded pages for the store API's lists. A page holds rows until the next one would take
// the JSON past the byte budget (always at least one row, so paging makes progress); `next` is an
// opaque cursor (base64url of the offset to resume at and what is left of the client's `limit`)
// the client sends back as `?cursor=` with the same query. Rows are fetched in small chunks, so
// a page never holds much more than its budget in memory either.
import { StoreValidationError } from "./errors.ts";

/** How one list is read: `fetch(offset, count)` returns up to `count` rows in a stable order. */
export interface Page {
  /** The client's `limit` (rows in all pages together), if any. */
  limit?: number;
  /** The store's own default and largest `limit` for this list, so paging keeps its meaning. */
  defaultLimit?: number;
  maxLimit?: number;
  /** The client's `offset`, if any. */
  offset?: number;
  fetch(offset: number, count: number): Promise<unknown[]>;
}

interface Cursor {
  /** Offset of the next row. */
  o: number;
  /** Rows left of the client's limit, or null for no limit. */
  r: number | null;
}

const CHUNK_ROWS = 64;

function decodeCursor(raw: string): Cursor {
  try {
    const cursor = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as Cursor;
    const okRemaining = cursor.r === null || (Number.isInteger(cursor.r) && cursor.r > 0);
    if (Number.isInteger(cursor.o) && cursor.o >= 0 && okRemaining) return cursor;
  } catch {
    // reported below
  }
  throw new StoreValidationError(`cursor is not one this server issued: "${raw.slice(0, 80)}"`, "cursor");
}

const encodeCursor = (cursor: Cursor) => Buffer.from(JSON.stringify(cursor)).toString("base64url");

/** One page as JSON text: `{"data":[…],"next":"…"|null}`. */
export async function pageOf(list: Page, rawCursor: string | undefined, maxBytes: number): Promise<string> {
  let offset: number;
  let remaining: number | null;
  if (rawCursor !== undefined) {
    ({ o: offset, r: remaining } = decodeCursor(rawCursor));
  } else {
    if (list.offset !== undefined && (!Number.isInteger(list.offset) || list.offset < 0)) {
      throw new StoreValidationError("offset must be a non-negative integer", "offset");
    }
    if (list.limit !== undefined && (!Number.isInteger(list.limit) || list.limit < 1)) {
      throw new StoreValidationError("limit must be a positive integer", "limit");
    }
    if (list.limit !== undefined && list.maxLimit !== undefined && list.limit > list.maxLimit) {
      throw new StoreValidationError(`limit must be at most ${list.maxLimit}`, "limit");
    }
    offset = list.offset ?? 0;
    remaining = list.limit ?? list.defaultLimit ?? null;
  }
  const rows: string[] = [];
  let bytes = 0;
  let more = true;
  while (more && (remaining === null || remaining > 0)) {
    const want = remaining === null ? CHUNK_ROWS : Math.min(CHUNK_ROWS, remaining);
    const chunk = await list.fetch(offset, want);
    if (chunk.length < want) more = false;
    for (let i = 0; i < chunk.length; i++) {
      const text = JSON.stringify(chunk[i]);
      const size = Buffer.byteLength(text) + 1;
      if (rows.length > 0 && bytes + size > maxBytes) {
        return `{"data":[${rows.join(",")}],"next":${JSON.stringify(encodeCursor({ o: offset, r: remaining }))}}`;
      }
      rows.push(text);
      bytes += size;
      offset++;
      if (remaining !== null) remaining--;
    }
  }
  return `{"data":[${rows.join(",")}],"next":null}`;
}
