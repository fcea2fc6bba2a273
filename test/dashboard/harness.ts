// Shared by the dashboard test and the screenshot script: serves the store API and the dashboard
// from one real Hono app on 127.0.0.1 (port 0), and launches Debian's headless Chromium through
// playwright-core.
import { existsSync } from "node:fs";
import { Hono } from "hono";
import { type Browser, chromium } from "playwright-core";
import { dashboardRoutes } from "../../src/dashboard/routes.ts";
import { type RunningServer, serveApp } from "../../src/http/serve.ts";
import { storeRoutes } from "../../src/store/routes.ts";
import type { Store } from "../../src/store/types.ts";

export const CHROMIUM_PATH = process.env.FULGUR_CHROMIUM ?? "/usr/bin/chromium";

/** The app the server composes: store API under /api/v1 beside the dashboard at /. */
export function dashboardApp(store: Store): Hono {
  const app = new Hono();
  app.route("/", storeRoutes(store));
  app.route("/", dashboardRoutes());
  return app;
}

export function serveDashboard(store: Store): Promise<RunningServer> {
  return serveApp(dashboardApp(store), "127.0.0.1", 0);
}

/** Headless Chromium, or a clear error pointing at scripts/setup-chromium.sh. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} not found: run scripts/setup-chromium.sh (or set FULGUR_CHROMIUM)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
