// A small deterministic OpenAI-compatible "LLM" for the prompt-optimisation tests, served over
// real HTTP (Hono on a free port). It plays two parts, told apart by the request:
//
// - the agent's model (no `<prompt>` block in the request): it follows the formatting
//   instructions it finds in the system message and repeats the user's text accordingly —
//   "upper case" → upper case, "period" → ends with ".", "lower case" → lower case (applied last);
// - the optimiser: a critique request (a `<prompt>` block and "Rollouts") gets a critique written
//   from the transcripts it is shown (for each low-reward rollout, the task's `want` compared
//   with the assistant's answer); a rewrite request (a `<prompt>` block and "Critique:") gets the
//   template plus the instruction(s) the critique asks for, chosen by `seed % 3`: 0 → the first
//   fix, 1 → every fix, 2 → a harmful edit ("lower case"), so beam search has bad edits to drop.
//
// The scripted answers depend only on what the algorithm sends, so a test fails if APO does not
// pass the transcripts, rewards or critique through.
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";

export const SCRIPTED_MODEL = "scripted";

export interface ScriptedLlm {
  baseURL: string;
  requests: { kind: "agent" | "critique" | "rewrite"; seed: number | null }[];
  close(): Promise<void>;
}

const FIXES = {
  upper: { critique: "The answers must be written in upper case.", instruction: "Write the answer in upper case." },
  period: { critique: "Each answer must end with a period.", instruction: "End the answer with a period." },
};

type Msg = { role: string; content: unknown };

const text = (content: unknown): string =>
  typeof content === "string"
    ? content
    : Array.isArray(content)
      ? content.map((p) => (p as { text?: string }).text ?? "").join("")
      : "";

function follow(system: string, text: string): string {
  let out = text.trim();
  if (/upper case/i.test(system)) out = out.toUpperCase();
  if (/period/i.test(system) && !out.endsWith(".")) out += ".";
  if (/lower case/i.test(system)) out = out.toLowerCase();
  return out;
}

/** Reads the rollouts of a critique request and names what the failing ones got wrong. */
function critique(user: string): string {
  const issues = new Set<keyof typeof FIXES>();
  for (const block of user.split(/\n\nRollout \d+\n/).slice(1)) {
    const reward = Number(/^Reward: ([\d.]+)/m.exec(block)?.[1] ?? "0");
    if (reward >= 1) continue;
    const task = /^Task: (\{.*\})$/m.exec(block)?.[1];
    const answer = /^\[assistant\] (.*)$/m.exec(block)?.[1] ?? "";
    if (!task) continue;
    const want = (JSON.parse(task) as { want: string }).want;
    if (want === want.toUpperCase() && answer !== answer.toUpperCase()) issues.add("upper");
    if (want.endsWith(".") && !answer.endsWith(".")) issues.add("period");
  }
  if (issues.size === 0) return "The prompt works; keep it.";
  return [...issues].map((i) => FIXES[i].critique).join(" ");
}

function rewrite(user: string, seed: number): string {
  const template = /<prompt>\n([\s\S]*?)\n<\/prompt>/.exec(user)?.[1] ?? "";
  const said = user.slice(user.indexOf("Critique:"));
  const fixes = (Object.keys(FIXES) as (keyof typeof FIXES)[])
    .filter((k) => said.includes(FIXES[k].critique))
    .map((k) => FIXES[k].instruction);
  const variant = seed % 3;
  const added =
    variant === 2 || fixes.length === 0
      ? ["Write the answer in lower case."]
      : variant === 0
        ? fixes.slice(0, 1)
        : fixes;
  return `Here is the improved template:\n<prompt>\n${[template, ...added].join(" ")}\n</prompt>`;
}

export async function startScriptedLlm(): Promise<ScriptedLlm> {
  const requests: ScriptedLlm["requests"] = [];
  const app = new Hono();
  app.get("/v1/models", (c) =>
    c.json({ object: "list", data: [{ id: SCRIPTED_MODEL, object: "model", created: 0, owned_by: "test" }] }),
  );
  app.post("/v1/chat/completions", async (c) => {
    const body = (await c.req.json()) as { model?: string; messages?: Msg[]; seed?: number };
    if (body.model !== SCRIPTED_MODEL) {
      return c.json({ error: { message: `model ${body.model} not found`, type: "invalid_request_error" } }, 404);
    }
    const messages = body.messages ?? [];
    const system = text(messages.find((m) => m.role === "system")?.content);
    const user = text(messages.filter((m) => m.role === "user").at(-1)?.content);
    let content: string;
    if (!user.includes("<prompt>")) {
      requests.push({ kind: "agent", seed: body.seed ?? null });
      content = follow(system, user);
    } else if (user.includes("Critique:")) {
      requests.push({ kind: "rewrite", seed: body.seed ?? null });
      content = rewrite(user, body.seed ?? 0);
    } else {
      requests.push({ kind: "critique", seed: body.seed ?? null });
      content = critique(user);
    }
    return c.json({
      id: `chatcmpl-${requests.length}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: SCRIPTED_MODEL,
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    });
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}
