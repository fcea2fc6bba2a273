// Browser module /dashboard/trace.js: one rollout's trace: its attempts, a span timeline ordered by
// sequence, every LLM call (chat messages, tool calls with pretty-printed arguments, tool results,
// the response, finish reason, tokens, adapter) and its rewards. Shipped as a string, no build step.

export const TRACE_JS = String.raw`// Fulgur dashboard: the rollout trace view.
import { api, badge, base64Count, el, fmtDuration, fmtNum, fmtTime, prettyJson } from "./dom.js";

/** Everything the trace view shows about one rollout, fetched in parallel. */
export async function loadTrace(rolloutId) {
  const id = encodeURIComponent(rolloutId);
  const [rollout, attempts, spans, transitions, rewards] = await Promise.all([
    api("/rollouts/" + id),
    api("/rollouts/" + id + "/attempts"),
    api("/spans?rolloutId=" + id),
    api("/transitions?rolloutId=" + id + "&limit=500"),
    api("/rewards?rolloutId=" + id),
  ]);
  if (rollout === null) return null;
  return {
    rollout,
    attempts: attempts ? attempts.data : [],
    spans: spans ? spans.data : [],
    transitions: transitions ? transitions.data : [],
    rewards: rewards ? rewards.data : [],
  };
}

/** A cheap fingerprint: the trace is redrawn only when this changes. */
export function traceSignature(trace) {
  if (!trace) return "none";
  const r = trace.rollout;
  return [r.id, r.status, r.updatedAt, trace.attempts.length, trace.spans.length, trace.transitions.length, trace.rewards.length].join("|");
}

function section(title, ...children) {
  return el("section", { class: "trace-section" }, el("h3", null, title), children);
}

function keyValues(pairs) {
  return el(
    "dl",
    { class: "kv" },
    pairs.filter((p) => p[1] !== null && p[1] !== undefined).map(([k, v]) => [el("dt", null, k), el("dd", null, v)]),
  );
}

function attemptsTable(attempts) {
  if (attempts.length === 0) return el("p", { class: "muted" }, "Not claimed yet.");
  return el(
    "table",
    { class: "compact" },
    el("thead", null, el("tr", null, ["#", "status", "worker", "started", "duration", "reward", "error"].map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      null,
      attempts.map((a) =>
        el(
          "tr",
          null,
          el("td", null, a.attemptNo),
          el("td", null, badge(a.status)),
          el("td", null, a.workerId),
          el("td", null, fmtTime(a.startedAt)),
          el("td", { class: "num" }, fmtDuration((a.endedAt ?? Date.now()) - a.startedAt)),
          el("td", { class: "num" }, fmtNum(a.reward)),
          el("td", { class: "error-text" }, a.error ? a.error.message : a.lateFinish ? "late finish: " + a.lateFinish.status : ""),
        ),
      ),
    ),
  );
}

function timeline(spans, attempts) {
  if (spans.length === 0) return el("p", { class: "muted" }, "No spans recorded.");
  const attemptNo = new Map(attempts.map((a) => [a.id, a.attemptNo]));
  const t0 = Math.min(...spans.map((s) => s.startTime));
  const t1 = Math.max(...spans.map((s) => s.endTime ?? s.startTime));
  const total = Math.max(1, t1 - t0);
  return el(
    "ol",
    { class: "timeline" },
    spans.map((s) => {
      const bar = el("span", { class: "bar k-" + s.kind });
      bar.style.marginLeft = ((s.startTime - t0) / total) * 100 + "%";
      bar.style.width = Math.max(0.5, (((s.endTime ?? s.startTime) - s.startTime) / total) * 100) + "%";
      const label = (attemptNo.size > 1 ? "a" + attemptNo.get(s.attemptId) + " " : "") + "#" + s.seq;
      return el(
        "li",
        { title: s.name + " (" + s.kind + ")" + (s.status && s.status.message ? ": " + s.status.message : "") },
        el("span", { class: "seq" }, label),
        el("span", { class: "span-name" }, el("span", { class: "kind k-" + s.kind }, s.kind), " ", s.name, s.late ? " (late)" : ""),
        el("span", { class: "track" }, bar),
        el("span", { class: "num dur" }, s.endTime === null ? "open" : fmtDuration(s.endTime - s.startTime)),
      );
    }),
  );
}

function textOf(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part.text === "string" ? part.text : prettyJson(part))).join("\n");
  }
  return prettyJson(content);
}

function toolCall(call) {
  const fn = call.function || call;
  return el(
    "div",
    { class: "tool-call" },
    el("div", { class: "tool-head" }, "tool call ", el("code", { class: "tool-name" }, fn.name || "?"), call.id ? el("span", { class: "muted" }, " " + call.id) : null),
    el("pre", { class: "tool-args" }, prettyJson(fn.arguments ?? {})),
  );
}

function message(msg, extraClass) {
  if (!msg || typeof msg !== "object") return el("div", { class: "msg" }, el("pre", null, prettyJson(msg)));
  const role = msg.role || "message";
  const head = el("div", { class: "msg-head" }, el("span", { class: "role r-" + role }, role));
  if (msg.name) head.append(" ", el("code", null, msg.name));
  if (msg.tool_call_id) head.append(el("span", { class: "muted" }, " result of " + msg.tool_call_id));
  const text = textOf(msg.content);
  return el(
    "div",
    { class: "msg r-" + role + (extraClass ? " " + extraClass : "") },
    head,
    text ? el("pre", { class: "msg-text" }, role === "tool" ? prettyJson(text) : text) : null,
    (msg.tool_calls || []).map(toolCall),
  );
}

function llmCall(t, index, spanSeq) {
  const promptTokens = t.usage ? t.usage.promptTokens : base64Count(t.promptIds);
  const completionTokens = t.usage ? t.usage.completionTokens : base64Count(t.responseIds);
  const facts = [
    t.model,
    "adapter " + (t.adapterVersion ?? "base"),
    "finish " + (t.finishReason ?? "–"),
    promptTokens + " prompt + " + completionTokens + " completion tokens",
    spanSeq ? "span #" + spanSeq : null,
    t.late ? "late" : null,
  ].filter(Boolean);
  return el(
    "details",
    { class: "llm-call", "data-id": t.id, open: true },
    el("summary", null, el("strong", null, "LLM call " + (index + 1)), " ", el("span", { class: "muted" }, facts.join(" · "))),
    el("div", { class: "messages" }, (t.messages || []).map((m) => message(m))),
    el("div", { class: "response-label" }, "response"),
    t.response ? message(t.response, "response") : el("p", { class: "muted" }, "No response recorded."),
  );
}

function rewardsTable(rewards, attempts) {
  if (rewards.length === 0) return el("p", { class: "muted" }, "No rewards recorded.");
  const attemptNo = new Map(attempts.map((a) => [a.id, a.attemptNo]));
  return el(
    "table",
    { class: "compact" },
    el("thead", null, el("tr", null, ["attempt", "value", "dimensions", ""].map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      null,
      rewards.map((r) =>
        el(
          "tr",
          null,
          el("td", null, attemptNo.get(r.attemptId) ?? "?"),
          el("td", { class: "num" }, fmtNum(r.value)),
          el("td", null, r.dimensions ? Object.entries(r.dimensions).map(([k, v]) => k + " " + fmtNum(v)).join(", ") : ""),
          el("td", { class: "muted" }, r.late ? "late" : ""),
        ),
      ),
    ),
  );
}

/** Draws a loaded trace into container, keeping which LLM calls the reader collapsed. */
export function renderTrace(container, trace, onClose) {
  const closed = new Set([...container.querySelectorAll("details.llm-call:not([open])")].map((d) => d.dataset.id));
  if (!trace) {
    container.replaceChildren(el("p", { class: "muted" }, "Rollout not found."));
    return;
  }
  const r = trace.rollout;
  const spanSeq = new Map(trace.spans.map((s) => [s.spanId, s.seq]));
  const calls = trace.transitions.map((t, i) => llmCall(t, i, t.spanId ? spanSeq.get(t.spanId) : null));
  for (const call of calls) if (closed.has(call.dataset.id)) call.open = false;
  container.replaceChildren(
    el(
      "header",
      { class: "trace-head" },
      el("h2", { id: "trace-title" }, "Rollout ", el("code", null, r.id)),
      badge(r.status),
      el("button", { type: "button", class: "close", "aria-label": "Close trace", onclick: onClose }, "×"),
    ),
    keyValues([
      ["mode", r.mode],
      ["group", r.groupId ?? "–"],
      ["final reward", fmtNum(r.finalReward)],
      ["resources", r.resourcesName ? r.resourcesName + " v" + (r.resourcesVersion ?? "?") : "–"],
      ["created", fmtTime(r.createdAt)],
      ["duration", r.startedAt ? fmtDuration((r.endedAt ?? Date.now()) - r.startedAt) : "–"],
    ]),
    el("details", { class: "input" }, el("summary", null, "input"), el("pre", null, prettyJson(r.input))),
    section("Attempts", attemptsTable(trace.attempts)),
    section("Spans", timeline(trace.spans, trace.attempts)),
    section("LLM calls (" + calls.length + ")", calls.length ? calls : el("p", { class: "muted" }, "No LLM calls recorded.")),
    section("Rewards", rewardsTable(trace.rewards, trace.attempts)),
  );
}
`;
