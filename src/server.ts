// The Fulgur server: composes every HTTP surface into one Hono app and serves it.
// `bun run server` / `npm run server`. Routes arrive with their modules (the OpenAI-compatible
// proxy, the store API, the dashboard); this file only wires them and owns process lifecycle.

import { parseArgs } from "node:util";
import { Hono } from "hono";
import { type RunningServer, serveApp } from "./http/serve.ts";

export const VERSION = "0.1.0";

export interface ServerOptions {
  host?: string;
  port?: number;
}

/** Builds the app without listening (tests call `app.request()` or serve it on port 0). */
export function createApp(): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ ok: true, name: "fulgur", version: VERSION }));
  return app;
}

/** Starts the server; resolves once it is listening. */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  return serveApp(createApp(), options.host ?? "127.0.0.1", options.port ?? 8000);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: process.env.FULGUR_HOST ?? "127.0.0.1" },
      port: { type: "string", default: process.env.FULGUR_PORT ?? "8000" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log("Usage: fulgur serve [--host 127.0.0.1] [--port 8000]   (env FULGUR_HOST, FULGUR_PORT)");
    return;
  }
  const server = await startServer({ host: values.host, port: Number(values.port) });
  console.log(`Fulgur ${VERSION} listening on ${server.url}`);
  console.log(`  health: ${server.url}/health`);
  const stop = async (signal: string) => {
    console.log(`\n${signal}: shutting down`);
    await server.close();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
}

const entry = process.argv[1] ?? "";
if (entry.endsWith("/src/server.ts") || entry.endsWith("\\src\\server.ts")) {
  main().catch((err) => {
    console.error(`fulgur server: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
