// Record ids: a type prefix plus a ULID-like body (48-bit millisecond time, then 64 random bits,
// Crockford base32), so ids are unique across machines, sort roughly by creation time and say
// what they name ("ro-…" rollout, "at-…" attempt).
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";

const CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";

// randomBytes per id is a syscall per id; a pooled buffer makes batch inserts of ids cheap.
let pool = Buffer.alloc(0);
let poolOffset = 0;
function takeRandom(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    pool = randomBytes(4096);
    poolOffset = 0;
  }
  poolOffset += n;
  return pool.subarray(poolOffset - n, poolOffset);
}

/** Id prefixes by record type. */
export type IdPrefix = "ro" | "at" | "sp" | "tr" | "rw";

/** A fresh id such as "ro-01jd8x3k2m7qf3v9c0r6w5t8ea". */
export function newId(prefix: IdPrefix): string {
  let time = Date.now();
  let head = "";
  for (let i = 0; i < 10; i++) {
    head = CROCKFORD[time % 32] + head;
    time = Math.floor(time / 32);
  }
  const random = takeRandom(10);
  let tail = "";
  for (let i = 0; i < 16; i++) {
    // 16 base32 digits = 80 bits; take 5 bits at a time from the random bytes.
    const bit = i * 5;
    const byte = bit >> 3;
    const word = (random[byte] << 8) | (random[byte + 1] ?? 0);
    tail += CROCKFORD[(word >> (11 - (bit & 7))) & 31];
  }
  return `${prefix}-${head}${tail}`;
}

/** Random OpenTelemetry span id (16 hex digits). */
export function newOtelSpanId(): string {
  return randomBytes(8).toString("hex");
}

/** The OpenTelemetry trace id (32 hex digits) of an attempt: stable, so its spans share one trace. */
export function traceIdForAttempt(attemptId: string): string {
  return createHash("sha256").update(attemptId).digest("hex").slice(0, 32);
}
