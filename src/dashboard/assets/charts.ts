// Browser module /dashboard/charts.js: groups training-step metrics into charts (reward, validation
// accuracy, loss, KL, …) and draws each as a hand-written SVG line chart with axes, a legend, the
// last value and a hover/keyboard readout. Shipped as a string: no chart library, no build step.

// biome-ignore lint/complexity/noUselessStringRaw: raw so a regex backslash added later survives as written
export const CHARTS_JS = String.raw`// Fulgur dashboard: metric grouping and SVG line charts.
import { el, fmtNum, svg } from "./dom.js";

// Known metric families, in display order. A metric joins the first group whose test matches;
// anything else gets a chart of its own, after these.
const GROUPS = [
  { id: "reward", title: "Reward", test: (k) => /^reward/i.test(k) },
  { id: "accuracy", title: "Validation accuracy", test: (k) => /^val/i.test(k) || /accuracy/i.test(k) },
  { id: "loss", title: "Loss", test: (k) => /loss/i.test(k) },
  { id: "kl", title: "KL divergence", test: (k) => /^kl/i.test(k) },
  { id: "clip", title: "Clip fraction", test: (k) => /clip/i.test(k) },
  { id: "entropy", title: "Entropy", test: (k) => /entropy/i.test(k) },
  { id: "grad", title: "Gradient norm", test: (k) => /grad/i.test(k) },
  { id: "lr", title: "Learning rate", test: (k) => /^(lr|learningRate)$/i.test(k) },
  { id: "speed", title: "Throughput", test: (k) => /perSecond|throughput/i.test(k) },
];
const COLORS = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2"];
const W = 300;
const H = 118;
const PAD = { left: 40, right: 10, top: 8, bottom: 20 };

/** Splits the metric keys present in steps into ordered chart groups: [{id, title, keys}]. */
export function groupMetrics(steps) {
  const keys = new Set();
  for (const step of steps) for (const key of Object.keys(step.metrics)) keys.add(key);
  const groups = new Map();
  const extras = [];
  for (const key of [...keys].sort()) {
    const group = GROUPS.find((g) => g.test(key));
    if (!group) {
      extras.push({ id: "m-" + key, title: key, keys: [key] });
      continue;
    }
    if (!groups.has(group.id)) groups.set(group.id, { id: group.id, title: group.title, keys: [] });
    groups.get(group.id).keys.push(key);
  }
  const known = GROUPS.filter((g) => groups.has(g.id)).map((g) => groups.get(g.id));
  return known.concat(extras);
}

/** The (step, value) points of one metric, in step order; steps without it are skipped. */
export function seriesOf(steps, key) {
  const points = [];
  for (const step of steps) {
    const value = step.metrics[key];
    if (typeof value === "number" && Number.isFinite(value)) points.push([step.step, value]);
  }
  return points;
}

function niceTicks(min, max, count) {
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { lo, hi, ticks };
}

/**
 * A line chart figure for one metric group. Returns the <figure>; its svg has one polyline per
 * series (data-key, data-count) so tests and people can read exactly what was plotted.
 */
export function lineChart(group, steps) {
  const series = group.keys.map((key, i) => ({ key, color: COLORS[i % COLORS.length], points: seriesOf(steps, key) }));
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const y = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const sx = (v) => PAD.left + (xMax === xMin ? plotW / 2 : ((v - xMin) / (xMax - xMin)) * plotW);
  const sy = (v) => PAD.top + plotH - ((v - y.lo) / (y.hi - y.lo)) * plotH;

  const lastValues = series
    .filter((s) => s.points.length > 0)
    .map((s) => s.key + " " + fmtNum(s.points[s.points.length - 1][1]));
  const chart = svg("svg", {
    viewBox: "0 0 " + W + " " + H,
    class: "chart",
    role: "img",
    tabindex: "0",
    "aria-label": group.title + " by training step; last " + lastValues.join(", "),
  });
  for (const tick of y.ticks) {
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(tick), y2: sy(tick), class: "grid" }));
    chart.append(svg("text", { x: PAD.left - 4, y: sy(tick) + 3, class: "tick", "text-anchor": "end" }, fmtNum(tick)));
  }
  // x axis: first step (named), middle, last; the ends are anchored inward so labels never collide.
  const xTicks = xMin === xMax ? [xMin] : [...new Set([xMin, Math.round((xMin + xMax) / 2), xMax])];
  xTicks.forEach((tick, i) => {
    const anchor = xTicks.length === 1 ? "middle" : i === 0 ? "start" : i === xTicks.length - 1 ? "end" : "middle";
    const label = i === 0 ? "step " + tick : String(tick);
    chart.append(svg("text", { x: sx(tick), y: H - 6, class: "tick", "text-anchor": anchor }, label));
  });
  for (const s of series) {
    const coords = s.points.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    chart.append(
      svg("polyline", {
        points: coords,
        stroke: s.color,
        class: "line",
        "data-key": s.key,
        "data-count": s.points.length,
      }),
    );
    if (s.points.length <= 60) {
      for (const p of s.points) chart.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2, fill: s.color }));
    }
  }
  const cursor = svg("line", { y1: PAD.top, y2: PAD.top + plotH, class: "cursor", visibility: "hidden" });
  chart.append(cursor);

  const readout = el("span", { class: "readout", "aria-live": "polite" });
  const allSteps = [...new Set(xs)].sort((a, b) => a - b);
  const showStep = (stepNo) => {
    cursor.setAttribute("x1", sx(stepNo));
    cursor.setAttribute("x2", sx(stepNo));
    cursor.setAttribute("visibility", "visible");
    const parts = series.map((s) => {
      const hit = s.points.find((p) => p[0] === stepNo);
      return hit ? s.key + " " + fmtNum(hit[1]) : null;
    });
    readout.textContent = "step " + stepNo + ": " + parts.filter(Boolean).join(", ");
  };
  const hide = () => {
    cursor.setAttribute("visibility", "hidden");
    readout.textContent = "";
  };
  chart.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * W;
    let best = allSteps[0];
    for (const stepNo of allSteps) if (Math.abs(sx(stepNo) - x) < Math.abs(sx(best) - x)) best = stepNo;
    showStep(best);
  });
  chart.addEventListener("mouseleave", hide);
  chart.addEventListener("blur", hide);
  // Keyboard: arrows walk the steps, so the readout works without a mouse.
  chart.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    event.preventDefault();
    const current = allSteps.indexOf(Number(chart.dataset.at ?? allSteps.length));
    const next = Math.max(0, Math.min(allSteps.length - 1, current + (event.key === "ArrowLeft" ? -1 : 1)));
    chart.dataset.at = allSteps[next];
    showStep(allSteps[next]);
  });

  const legend = el(
    "ul",
    { class: "legend" },
    series.map((s) =>
      el(
        "li",
        null,
        el("span", { class: "swatch", "data-color": s.color }),
        s.key,
        " ",
        el("strong", null, s.points.length ? fmtNum(s.points[s.points.length - 1][1]) : "–"),
      ),
    ),
  );
  for (const swatch of legend.querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.color;
  return el(
    "figure",
    { class: "card chart-card", "data-group": group.id },
    el("figcaption", null, el("span", { class: "chart-title" }, group.title), readout),
    chart,
    legend,
  );
}

/**
 * Keeps container's charts in step with steps: a chart is redrawn only when its own data
 * changed, so polling does not flicker or reset a chart someone is reading.
 */
export function renderCharts(container, steps) {
  if (steps.length === 0) {
    if (!container.querySelector(".empty")) {
      container.replaceChildren(el("p", { class: "empty" }, "No training steps recorded yet."));
    }
    return;
  }
  const figures = groupMetrics(steps).map((group) => {
    const signature = group.keys
      .map((key) => {
        const points = seriesOf(steps, key);
        const last = points[points.length - 1];
        return key + ":" + points.length + ":" + (last ? last.join("/") : "");
      })
      .join("|");
    const existing = container.querySelector('figure[data-group="' + CSS.escape(group.id) + '"]');
    if (existing && existing.dataset.signature === signature) return existing;
    const figure = lineChart(group, steps);
    figure.dataset.signature = signature;
    return figure;
  });
  const same = figures.length === container.children.length && figures.every((f, i) => container.children[i] === f);
  if (!same) container.replaceChildren(...figures);
}
`;
