// What prompt optimisation says to its optimiser LLM and how it reads the answers: rollouts
// rendered as short transcripts (task, conversation, reward) within a character budget, the
// critique request (the "textual gradient"), the rewrite request (the edit), and parsing a
// rewrite back into a template, rejecting ones that are empty, unchanged, too long or that drop
// a `{placeholder}` the agent fills in.

import { templateFields } from "../prompt-template.ts";
import type { JsonValue, Transition } from "../store/types.ts";

export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

/** One scored rollout as the optimiser sees it. */
export interface RolloutView {
  input: JsonValue;
  /** Final reward; null when the rollout failed. */
  reward: number | null;
  /** The rollout's LLM calls in recording order (the last one holds the whole conversation). */
  transitions: Transition[];
}

const SYSTEM =
  "You improve the prompt template of an AI agent. Rollouts show what the agent did with it and the reward it earned (higher is better).";

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 3))}...`;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((p) => (p && typeof p === "object" && "text" in p ? String(p.text) : "")).join("");
  }
  return content == null ? "" : JSON.stringify(content);
}

function renderMessage(message: unknown, maxChars: number): string {
  const m = (message ?? {}) as { role?: unknown; content?: unknown; tool_calls?: unknown };
  let text = textOf(m.content);
  if (m.tool_calls) text += ` ${JSON.stringify(m.tool_calls)}`;
  return `[${String(m.role ?? "?")}] ${clip(text.trim(), maxChars)}`;
}

/**
 * A rollout as text: its task, the conversation of its last LLM call plus the answer, and its
 * reward, within `maxChars` (each message is clipped to a share of it).
 */
export function renderRollout(view: RolloutView, maxChars: number): string {
  const reward = view.reward === null ? "failed (counted as 0)" : String(Number(view.reward.toFixed(4)));
  const head = `Task: ${clip(JSON.stringify(view.input), Math.max(40, Math.floor(maxChars / 3)))}`;
  const last = view.transitions.at(-1);
  const turns = last ? [...(Array.isArray(last.messages) ? last.messages : []), last.response] : [];
  const perMessage = Math.max(40, Math.floor((maxChars - head.length) / Math.max(1, turns.length)) - 12);
  const lines = [head, ...turns.filter((t) => t != null).map((t) => renderMessage(t, perMessage))];
  if (!last) lines.push("(no LLM calls recorded)");
  lines.push(`Reward: ${reward}`);
  return clip(lines.join("\n"), maxChars);
}

/** The request for a critique of `template` from these rollouts (worst first), within `maxChars`. */
export function critiqueMessages(template: string, rollouts: RolloutView[], maxChars: number): ChatMessage[] {
  const budget = Math.max(80, maxChars - template.length - 400);
  const each = Math.floor(budget / Math.max(1, rollouts.length));
  const shown = rollouts.map((r, i) => `Rollout ${i + 1}\n${renderRollout(r, each)}`).join("\n\n");
  return [
    { role: "system", content: SYSTEM },
    {
      role: "user",
      content:
        `Prompt template:\n<prompt>\n${template}\n</prompt>\n\nRollouts that used it, worst first:\n\n${shown}\n\n` +
        "Write a short critique: why did the low-reward rollouts fail, and what instruction in the prompt would fix it?",
    },
  ];
}

/** The request for one rewrite of `template` that answers `critique`. */
export function rewriteMessages(template: string, critique: string, maxChars: number): ChatMessage[] {
  const fields = templateFields(template);
  const keep = fields.length ? ` Keep the placeholders ${fields.map((f) => `{${f}}`).join(", ")}.` : "";
  return [
    { role: "system", content: SYSTEM },
    {
      role: "user",
      content:
        `Prompt template:\n<prompt>\n${template}\n</prompt>\n\nCritique:\n${clip(critique.trim(), Math.max(80, maxChars - template.length - 300))}\n\n` +
        `Rewrite the prompt template to fix what the critique says.${keep} Answer with only the new template between <prompt> and </prompt>.`,
    },
  ];
}

export type ParsedRewrite = { ok: true; template: string } | { ok: false; reason: string };

/**
 * The template in a rewrite answer: the last `<prompt>…</prompt>` block, else the text after an
 * unclosed `<prompt>`, else the whole answer without code fences (many models drop the tags).
 */
export function parseRewrite(answer: string, parent: string, maxChars: number): ParsedRewrite {
  const blocks = Array.from(answer.matchAll(/<prompt>([\s\S]*?)<\/prompt>/g), (m) => m[1]);
  let text: string;
  if (blocks.length > 0) text = blocks[blocks.length - 1];
  else if (answer.includes("<prompt>")) text = answer.slice(answer.lastIndexOf("<prompt>") + "<prompt>".length);
  else text = answer.replace(/^\s*```[a-zA-Z]*\n?/, "").replace(/\n?```\s*$/, "");
  const template = text.trim();
  if (template.length === 0) return { ok: false, reason: "empty" };
  if (template === parent.trim()) return { ok: false, reason: "unchanged" };
  if (template.length > maxChars) return { ok: false, reason: `longer than ${maxChars} characters` };
  const have = new Set(templateFields(template));
  const lost = templateFields(parent).filter((f) => !have.has(f));
  if (lost.length) return { ok: false, reason: `drops placeholder(s) ${lost.map((f) => `{${f}}`).join(", ")}` };
  return { ok: true, template };
}
