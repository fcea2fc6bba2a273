// Browser module /dashboard/app.js: the dashboard's entry point: polls the store API every 2 s
// while the tab is visible, and keeps the header (run status), charts, rollouts table and the open
// trace in step with it, updating only what changed. Shipped as a string, no build step.

// biome-ignore lint/complexity/noUselessStringRaw: raw so a regex backslash added later survives as written
export const APP_JS = String.raw`// Fulgur dashboard: polling, run status, rollouts table, selection.
import { api, ApiError, badge, el, fmtDuration, fmtNum, fmtTime, setApiKey } from "./dom.js";
import { renderCharts } from "./charts.js";
import { loadTrace, renderTrace, traceSignature } from "./trace.js";

const POLL_MS = 2000;
// Rollouts fetched per poll, newest first: the table and the status counts cover this window.
const ROLLOUT_WINDOW = 500;
const PAGE_SIZE = 20;
const STATUSES = ["queuing", "preparing", "running", "requeuing", "succeeded", "failed", "cancelled"];

const $ = (id) => document.getElementById(id);
const state = { steps: [], rollouts: [], adapter: null, page: 0, traceSig: null, timer: null, inFlight: false };

/** Merges newly fetched steps (sinceStep is inclusive, so the last step comes back: dedupe by id). */
function mergeSteps(fresh) {
  const known = new Set(state.steps.map((s) => s.id));
  const added = fresh.filter((s) => !known.has(s.id));
  if (added.length === 0) return false;
  state.steps = state.steps.concat(added).sort((a, b) => a.step - b.step || a.id - b.id);
  return true;
}

function renderStatus() {
  const latest = state.steps.length ? state.steps[state.steps.length - 1].step : null;
  const counts = new Map(STATUSES.map((s) => [s, 0]));
  for (const r of state.rollouts) counts.set(r.status, (counts.get(r.status) || 0) + 1);
  const capped = state.rollouts.length >= ROLLOUT_WINDOW;
  $("stat-step").textContent = latest === null ? "–" : String(latest);
  $("stat-adapter").textContent = state.adapter ? "v" + state.adapter.version : "base";
  $("stat-rollouts").textContent = (capped ? "latest " : "") + state.rollouts.length;
  const chips = STATUSES.filter((s) => counts.get(s) > 0).map((s) =>
    el("li", null, badge(s), " ", el("strong", { "data-status": s }, counts.get(s))),
  );
  $("status-counts").replaceChildren(...chips);
}

function durationOf(r) {
  if (!r.startedAt) return null;
  return (r.endedAt ?? Date.now()) - r.startedAt;
}

function rolloutRow(r) {
  // Ids share a long time prefix; the tail tells rollouts apart, the full id is in the label.
  const open = el(
    "button",
    { type: "button", class: "link", "data-rollout": r.id, title: r.id, "aria-label": "Open trace of " + r.id, onclick: () => select(r.id) },
    "…" + r.id.slice(-8),
  );
  return el(
    "tr",
    { "data-id": r.id },
    el("td", null, open),
    el("td", null, badge(r.status)),
    el("td", null, r.mode),
    el("td", { class: "group" }, r.groupId ?? "–"),
    el("td", { class: "num" }, fmtNum(r.finalReward)),
    el("td", { class: "num" }, r.attemptCount),
    el("td", { class: "num" }, fmtDuration(durationOf(r))),
    el("td", { class: "num" }, fmtTime(r.createdAt)),
  );
}

function filteredRollouts() {
  const status = $("filter-status").value;
  const mode = $("filter-mode").value;
  return state.rollouts.filter((r) => (!status || r.status === status) && (!mode || r.mode === mode));
}

/** Redraws the visible page of the table, reusing rows whose rollout did not change. */
function renderTable() {
  const rows = filteredRollouts();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const visible = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  const body = $("rollouts-body");
  const existing = new Map([...body.children].map((tr) => [tr.dataset.id, tr]));
  const selected = currentSelection();
  const next = visible.map((r) => {
    const signature = [r.status, r.finalReward, r.attemptCount, r.updatedAt, r.endedAt === null ? Math.floor(Date.now() / 1000) : ""].join("|");
    let tr = existing.get(r.id);
    if (!tr || tr.dataset.signature !== signature) {
      tr = rolloutRow(r);
      tr.dataset.signature = signature;
    }
    tr.classList.toggle("selected", r.id === selected);
    return tr;
  });
  if (next.length === 0) next.push(el("tr", null, el("td", { colspan: 8, class: "empty" }, "No rollouts match.")));
  const same = next.length === body.children.length && next.every((tr, i) => body.children[i] === tr);
  if (!same) body.replaceChildren(...next);
  $("page-info").textContent = rows.length ? "page " + (state.page + 1) + " of " + pages + " · " + rows.length + " rollouts" : "";
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = state.page >= pages - 1;
}

function currentSelection() {
  const match = /rollout=([^&]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function select(rolloutId) {
  location.hash = "rollout=" + encodeURIComponent(rolloutId);
}

function closeTrace() {
  const id = currentSelection();
  history.pushState(null, "", location.pathname + location.search);
  showSelection();
  // Keyboard users land back on the row they opened.
  const button = id && document.querySelector('button[data-rollout="' + CSS.escape(id) + '"]');
  if (button) button.focus();
}

async function refreshTrace(force) {
  const id = currentSelection();
  const panel = $("trace");
  if (!id) {
    panel.hidden = true;
    state.traceSig = null;
    return;
  }
  const known = state.rollouts.find((r) => r.id === id);
  // An ended rollout whose record did not change cannot have a changed trace: skip the fetch.
  if (!force && known && known.endedAt !== null && state.traceSig && state.traceSig.startsWith(id + "|" + known.status + "|" + known.updatedAt + "|")) return;
  const trace = await loadTrace(id);
  const signature = traceSignature(trace);
  if (!force && signature === state.traceSig) return;
  state.traceSig = signature;
  panel.hidden = false;
  renderTrace($("trace-body"), trace, closeTrace);
}

async function showSelection() {
  renderTable();
  try {
    await refreshTrace(true);
    if (currentSelection()) $("trace").focus();
  } catch (error) {
    showError(error);
  }
}

function showError(error) {
  const box = $("error");
  if (error instanceof ApiError && error.status === 401) {
    $("auth").hidden = false;
  }
  box.textContent = error ? "Could not reach the store: " + error.message : "";
  box.hidden = !error;
}

async function poll() {
  if (state.inFlight) return;
  state.inFlight = true;
  try {
    const since = state.steps.length ? "?sinceStep=" + state.steps[state.steps.length - 1].step : "";
    const [steps, rollouts, adapter] = await Promise.all([
      api("/training-steps" + since),
      api("/rollouts?order=desc&limit=" + ROLLOUT_WINDOW),
      api("/resources/adapter"),
    ]);
    if (mergeSteps(steps.data) || state.steps.length === 0) renderCharts($("charts"), state.steps);
    state.rollouts = rollouts.data;
    state.adapter = adapter;
    renderStatus();
    renderTable();
    await refreshTrace(false);
    $("updated").textContent = "updated " + fmtTime(Date.now());
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    state.inFlight = false;
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = null;
  if (document.hidden) return;
  state.timer = setTimeout(async () => {
    await poll();
    schedule();
  }, POLL_MS);
}

// Polling stops while the tab is hidden and catches up at once when it is shown again.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(state.timer);
    state.timer = null;
  } else {
    poll().then(schedule);
  }
});
window.addEventListener("hashchange", showSelection);
for (const id of ["filter-status", "filter-mode"]) {
  $(id).addEventListener("change", () => {
    state.page = 0;
    renderTable();
  });
}
$("page-prev").addEventListener("click", () => {
  state.page -= 1;
  renderTable();
});
$("page-next").addEventListener("click", () => {
  state.page += 1;
  renderTable();
});
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey($("api-key").value.trim());
  $("auth").hidden = true;
  poll();
});
$("filter-status").append(...STATUSES.map((s) => el("option", { value: s }, s)));

poll().then(schedule);
`;
