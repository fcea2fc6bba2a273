// The dashboard's stylesheet (served at /dashboard/style.css): a light, dense layout for 1280-px
// screens that stacks on narrow ones; status and span-kind colours live here, not in the JS.

export const STYLE_CSS = `:root {
  --bg: #f5f6f8; --card: #fff; --ink: #1f2430; --muted: #6b7280; --line: #e4e7ec; --accent: #2563eb;
  --ok: #16a34a; --bad: #dc2626; --warn: #d97706; --run: #2563eb; --idle: #6b7280;
  font: 13px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; }
h1, h2, h3 { margin: 0; font-weight: 600; }
h1 { font-size: 17px; }
h2 { font-size: 14px; }
h3 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 14px 0 6px; }
code, pre { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
button, select, input { font: inherit; }
.muted { color: var(--muted); font-weight: 400; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }

.top { display: flex; align-items: center; gap: 24px; padding: 10px 20px; background: #111827; color: #f9fafb; flex-wrap: wrap; }
.top .muted { color: #9ca3af; }
.logo { color: #facc15; }
.stats { display: flex; gap: 20px; margin: 0; }
.stats div { display: flex; flex-direction: column; }
.stats dt { font-size: 11px; color: #9ca3af; text-transform: uppercase; letter-spacing: .04em; }
.stats dd { margin: 0; font-size: 16px; font-weight: 600; font-variant-numeric: tabular-nums; }
.counts { display: flex; gap: 10px; list-style: none; margin: 0; padding: 0; flex-wrap: wrap; }
.counts strong { font-variant-numeric: tabular-nums; }
.updated { margin: 0 0 0 auto; color: #9ca3af; font-size: 12px; display: flex; align-items: center; gap: 6px; }
.live-dot { width: 8px; height: 8px; border-radius: 50%; background: #22c55e; }
.error { margin: 0; padding: 8px 20px; background: #fef2f2; color: var(--bad); border-bottom: 1px solid #fecaca; }
.auth { padding: 8px 20px; display: flex; gap: 8px; align-items: center; background: #fffbeb; }

main { padding: 14px 20px 24px; display: flex; flex-direction: column; gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 12px; }
.chart-card { margin: 0; padding: 8px 10px 6px; }
.chart-card figcaption { display: flex; justify-content: space-between; gap: 8px; align-items: baseline; }
.chart-title { font-weight: 600; }
.readout { color: var(--muted); font-size: 11px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.chart { width: 100%; height: auto; display: block; overflow: visible; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .tick { font-size: 9px; fill: var(--muted); }
.chart .line { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
.chart .cursor { stroke: #9ca3af; stroke-dasharray: 3 2; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 2px 0 0; padding: 0; font-size: 11px; color: var(--muted); }
.legend strong { color: var(--ink); font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 3px; border-radius: 2px; margin-right: 4px; vertical-align: middle; }
.empty { color: var(--muted); padding: 12px; margin: 0; }

.split { display: grid; grid-template-columns: 1fr; gap: 14px; align-items: start; }
.split:has(> .trace:not([hidden])) { grid-template-columns: minmax(0, 11fr) minmax(0, 10fr); }
.section-head { display: flex; align-items: center; gap: 14px; padding: 10px 12px; border-bottom: 1px solid var(--line); }
.section-head h2 { margin-right: auto; }
.section-head label { color: var(--muted); display: flex; gap: 6px; align-items: center; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 500; color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .03em; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); white-space: nowrap; }
.rollout-table td.group { max-width: 90px; overflow: hidden; text-overflow: ellipsis; }
.rollout-table tbody tr:hover, tr.selected { background: #eff6ff; }
button.link { background: none; border: 0; padding: 0; color: var(--accent); cursor: pointer; font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
button.link:hover { text-decoration: underline; }
.pager { display: flex; justify-content: space-between; align-items: center; padding: 8px 12px; color: var(--muted); }
.pager button, .close { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 2px 10px; cursor: pointer; }
.pager button:disabled { opacity: .4; cursor: default; }

.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 11px; font-weight: 500; line-height: 18px; background: #f3f4f6; color: var(--idle); }
.s-succeeded { background: #dcfce7; color: #166534; }
.s-failed, .s-timeout, .s-unresponsive { background: #fee2e2; color: #991b1b; }
.s-running { background: #dbeafe; color: #1e40af; }
.s-preparing { background: #e0f2fe; color: #075985; }
.s-requeuing { background: #fef3c7; color: #92400e; }
.s-cancelled { background: #e5e7eb; color: #374151; }

.trace { padding: 12px 14px; max-height: calc(100vh - 40px); overflow: auto; position: sticky; top: 10px; }
.trace { padding-top: 0; }
.trace-head { display: flex; align-items: center; gap: 10px; position: sticky; top: 0; z-index: 1; background: var(--card); padding: 12px 0 8px; border-bottom: 1px solid var(--line); }
.trace-head h2 { margin-right: auto; }
.close { font-size: 16px; line-height: 1; padding: 2px 8px; }
.kv { display: grid; grid-template-columns: repeat(3, auto 1fr); gap: 2px 10px; margin: 10px 0 6px; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; }
details.input summary { cursor: pointer; color: var(--muted); }
details.input pre { background: #f9fafb; padding: 6px 8px; border-radius: 6px; margin-top: 4px; }
table.compact th, table.compact td { padding: 3px 6px; }
.error-text { color: var(--bad); white-space: normal; }

.timeline { list-style: none; margin: 0; padding: 0; }
.timeline li { display: grid; grid-template-columns: 44px minmax(0, 190px) 1fr 60px; gap: 8px; align-items: center; padding: 2px 0; }
.seq { color: var(--muted); font-variant-numeric: tabular-nums; }
.span-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { background: #f3f4f6; border-radius: 3px; height: 10px; overflow: hidden; }
.bar { display: block; height: 100%; border-radius: 3px; background: var(--idle); }
.kind { font-size: 10px; text-transform: uppercase; padding: 0 4px; border-radius: 3px; color: #fff; background: var(--idle); }
.k-llm { background: #2563eb; } .k-tool { background: #9333ea; } .k-reward { background: #16a34a; }
.k-exception { background: #dc2626; } .k-message { background: #0891b2; }

.llm-call { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 8px; }
.llm-call > summary { cursor: pointer; padding: 6px 8px; background: #f9fafb; border-radius: 6px; }
.messages { padding: 6px 8px 0; display: flex; flex-direction: column; gap: 6px; }
.msg { border-left: 3px solid var(--line); padding: 2px 0 2px 8px; }
.msg.response { margin: 0 8px 8px; }
.msg-head { margin-bottom: 2px; }
.role { font-size: 11px; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
.msg.r-system { border-color: #9ca3af; } .msg.r-user { border-color: #0891b2; }
.msg.r-assistant { border-color: #2563eb; } .msg.r-tool { border-color: #9333ea; }
.response-label { padding: 6px 8px 2px; font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
.tool-call { margin-top: 4px; background: #faf5ff; border-radius: 4px; padding: 4px 6px; }
.tool-name { font-weight: 600; color: #7e22ce; }
.tool-args { margin-top: 2px; }
@media (max-width: 900px) { .split:has(> .trace:not([hidden])) { grid-template-columns: 1fr; } .trace { position: static; max-height: none; } }
`;
