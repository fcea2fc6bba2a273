// The training dashboard's HTTP surface: GET / (the page) and its hand-written JS/CSS under
// /dashboard/, all served from string constants compiled into this module, so no request path
// ever reaches the filesystem and nothing needs a build step. The page is a plain client of the
// store API (storeRoutes, /api/v1); the server mounts both side by side.
import { createHash } from "node:crypto";
import { Hono } from "hono";
import { APP_JS } from "./assets/app.ts";
import { CHARTS_JS } from "./assets/charts.ts";
import { DOM_JS } from "./assets/dom.ts";
import { PAGE_HTML } from "./assets/page.ts";
import { STYLE_CSS } from "./assets/style.ts";
import { TRACE_JS } from "./assets/trace.ts";

export interface DashboardAsset {
  body: string;
  contentType: string;
  /** Strong validator of the body, so revalidation is a cheap 304. */
  etag: string;
}

const JS = "text/javascript; charset=utf-8";

// Same-origin only: the page talks to nothing but this server (the store API), and message
// contents shown in traces can never run as script.
const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function asset(body: string, contentType: string): DashboardAsset {
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
  return { body, contentType, etag };
}

/** Every file the dashboard serves, by URL path. */
export const DASHBOARD_ASSETS: ReadonlyMap<string, DashboardAsset> = new Map([
  ["/", asset(PAGE_HTML, "text/html; charset=utf-8")],
  ["/dashboard/app.js", asset(APP_JS, JS)],
  ["/dashboard/charts.js", asset(CHARTS_JS, JS)],
  ["/dashboard/trace.js", asset(TRACE_JS, JS)],
  ["/dashboard/dom.js", asset(DOM_JS, JS)],
  ["/dashboard/style.css", asset(STYLE_CSS, "text/css; charset=utf-8")],
]);

/**
 * Builds the Hono app serving the dashboard at `/` and its assets under `/dashboard/`. Mount it
 * beside the store API: `app.route("/", storeRoutes(store)); app.route("/", dashboardRoutes())`.
 * Assets are revalidated on every load (`no-cache` + ETag), so a new server version is picked up
 * at once while unchanged files cost a 304.
 */
export function dashboardRoutes(): Hono {
  const app = new Hono();
  for (const [path, file] of DASHBOARD_ASSETS) {
    app.get(path, (c) => {
      const headers: Record<string, string> = {
        "content-type": file.contentType,
        "cache-control": "no-cache",
        etag: file.etag,
        "x-content-type-options": "nosniff",
      };
      if (path === "/") {
        headers["content-security-policy"] = PAGE_CSP;
        headers["referrer-policy"] = "no-referrer";
      }
      const ifNoneMatch = c.req.header("if-none-match");
      if (ifNoneMatch?.split(",").some((tag) => tag.trim().replace(/^W\//, "") === file.etag)) {
        return c.body(null, 304, headers);
      }
      return c.body(file.body, 200, headers);
    });
  }
  return app;
}
