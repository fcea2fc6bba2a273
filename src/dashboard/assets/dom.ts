// Browser module /dashboard/dom.js: the dashboard's small shared toolkit (DOM builders, number and
// time formatting, the JSON API client). Shipped as a string: hand-written JS, no build step.
// Message contents from the store are untrusted, so everything is built with textContent, never
// innerHTML.

// biome-ignore lint/complexity/noUselessStringRaw: raw so a regex backslash added later survives as written
export const DOM_JS = String.raw`// Fulgur dashboard: DOM builders, formatting and the store API client.
const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.setAttribute("class", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element: el("td", { class: "num" }, "1.5"). Strings become text nodes. */
export function el(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element, same shape as el(). */
export function svg(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** A number for people: 3 significant digits, thousands compacted. */
export function fmtNum(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return value.toExponential(2);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  return String(Number(value.toPrecision(3)));
}

/** A duration in ms as "850 ms", "12.3 s", "4m 05s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  const minutes = Math.floor(ms / 60000);
  return minutes + "m " + String(Math.floor((ms % 60000) / 1000)).padStart(2, "0") + "s";
}

/** Epoch ms as local "HH:MM:SS". */
export function fmtTime(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

/** A status pill; its class carries the colour. */
export function badge(status) {
  return el("span", { class: "badge s-" + status }, status);
}

/** Pretty-printed JSON; strings that hold JSON (tool-call arguments) are parsed first. */
export function prettyJson(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

/** Token count of a base64 blob of 4-byte values (how the API ships token ids). */
export function base64Count(b64) {
  if (typeof b64 !== "string" || b64 === "") return 0;
  const padding = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.floor(((b64.length * 3) / 4 - padding) / 4);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const KEY_STORAGE = "fulgur.apiKey";

/** Stores the API key the store routes ask for (sessionStorage: gone when the tab closes). */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** GET /api/v1{path} as JSON. 404 resolves to null (absent is a normal state for resources). */
export async function api(path) {
  const headers = { accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.authorization = "Bearer " + key;
  const response = await fetch("/api/v1" + path, { headers, cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      message = (await response.json()).error.message || message;
    } catch {}
    throw new ApiError(response.status, message);
  }
  return response.json();
}
`;
