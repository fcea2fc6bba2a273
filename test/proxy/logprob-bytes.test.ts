// Logprob `bytes` are a token's raw bytes: a byte-level BPE token that is one piece of a multibyte
// character decodes to U+FFFD, but its bytes are the real ones, so a client can join the bytes of
// consecutive tokens back into the text. Checked on the built-in model's tokenizer and through the
// real server (tiny random model on the GPU, official openai SDK).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyModel } from "../../src/model/tiny.ts";
import { ModelTokenizer } from "../../src/model/tokenizer.ts";
import { type FulgurServer, startServer } from "../../src/server.ts";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const lossyUtf8 = new TextDecoder("utf-8");
const isWholeUtf8 = (bytes: number[]) => {
  try {
    strictUtf8.decode(Uint8Array.from(bytes));
    return true;
  } catch {
    return false;
  }
};

describe("ModelTokenizer.tokenBytes", () => {
  it("gives the raw bytes of byte-level tokens, partial UTF-8 sequences included", async () => {
    const tok = await ModelTokenizer.load("models/fulgur-calc");
    const text = "Ünïcode: 日本語 and 🙂 (42 + 7)";
    const ids = tok.encode(text, { addSpecialTokens: false });
    const joined = ids.flatMap((id) => Array.from(tok.tokenBytes(id)));
    expect(joined).toEqual(Array.from(new TextEncoder().encode(text)));
    // The case the old code got wrong: tokens that are pieces of one character.
    const partial = ids.filter((id) => !isWholeUtf8(Array.from(tok.tokenBytes(id))));
    expect(partial.length).toBeGreaterThan(0);
    for (const id of partial) expect(tok.decode([id])).toContain("\uFFFD");
    // Added tokens are their text.
    const imEnd = tok.tokenToId("<|im_end|>");
    expect(imEnd).toBeDefined();
    expect(lossyUtf8.decode(tok.tokenBytes(imEnd as number))).toBe("<|im_end|>");
  });
});

describe("chat logprobs bytes through the server", () => {
  let dir: string;
  let server: FulgurServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fulgur-bytes-"));
    await writeTinyModel(join(dir, "tiny"), { hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 48, seed: 9 });
    server = await startServer({
      modelDir: join(dir, "tiny"),
      storeUrl: `file:${join(dir, "store.db")}`,
      port: 0,
      maxSeqLen: 256,
    });
  });

  afterAll(async () => {
    await server?.shutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("reports each sampled token's and alternative's raw bytes, so the bytes join into the text", async () => {
    const rollout = await server.store.enqueueRollout({ input: "bytes" });
    const claim = await server.store.claimRollout({ workerId: "bytes" });
    expect(claim?.rollout.id).toBe(rollout.id);
    const attemptId = claim!.attempt.id;
    const client = new OpenAI({
      baseURL: `${server.url}/rollouts/${rollout.id}/attempts/${attemptId}/v1`,
      apiKey: "unused",
      maxRetries: 0,
    });
    // A random model samples near-uniformly, so byte tokens ≥ 0x80 (pieces of characters) show up.
    const res = await client.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Écris 日本" }],
      max_tokens: 40,
      temperature: 1,
      seed: 11,
      logprobs: true,
      top_logprobs: 5,
    });
    const content = res.choices[0].logprobs?.content ?? [];
    await server.recorder.flush();
    const [t] = await server.store.getTransitions({ attemptId });
    const ids = Array.from(t.responseIds);
    expect(content.length).toBe(ids.length);
    const tok = server.model!.tokenizer;
    const special = new Set(tok.specialTokenIds);
    // The bytes of the text tokens, joined, are the message text: what the SDK user would rebuild.
    const joined = content.filter((_, i) => !special.has(ids[i])).flatMap((lp) => lp.bytes ?? []);
    expect(lossyUtf8.decode(Uint8Array.from(joined))).toBe(res.choices[0].message.content ?? "");
    const partial = content.filter((lp) => !isWholeUtf8(lp.bytes ?? []));
    expect(partial.length).toBeGreaterThan(0);
    for (const lp of partial) {
      expect(lp.token).toContain("\uFFFD");
      // Before the fix these were the bytes of U+FFFD.
      expect(lp.bytes).not.toEqual([0xef, 0xbf, 0xbd]);
    }
    content.forEach((lp, i) => {
      expect(lp.bytes).toEqual(Array.from(tok.tokenBytes(ids[i])));
      expect(lp.top_logprobs.length).toBe(5);
      for (const alt of lp.top_logprobs) {
        expect(alt.bytes).not.toBeNull();
        // A whole-character alternative's bytes are its text; a partial one is not U+FFFD's bytes.
        if (isWholeUtf8(alt.bytes ?? [])) expect(lossyUtf8.decode(Uint8Array.from(alt.bytes ?? []))).toBe(alt.token);
        else expect(alt.bytes).not.toEqual([0xef, 0xbf, 0xbd]);
      }
    });
  });
});
