// Serves a Hono app on whichever runtime we are on: Bun.serve under Bun, @hono/node-server under
// Node. Returns the bound URL and a close() that stops accepting and waits for open requests.

import type { Hono } from "hono";

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface BunLike {
  serve(options: { fetch: (req: Request) => Response | Promise<Response>; hostname: string; port: number }): {
    port: number;
    stop(closeActive?: boolean): Promise<void> | void;
  };
}

/** Starts serving `app` on host:port (port 0 picks a free one). */
export async function serveApp(app: Hono, host = "127.0.0.1", port = 0): Promise<RunningServer> {
  const bun = (globalThis as { Bun?: BunLike }).Bun;
  if (bun) {
    const server = bun.serve({ fetch: app.fetch, hostname: host, port });
    return {
      url: `http://${urlHost(host)}:${server.port}`,
      port: server.port,
      close: async () => {
        await server.stop(false);
      },
    };
  }
  const { serve } = await import("@hono/node-server");
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: host, port }, (info) => {
      resolve({
        url: `http://${urlHost(host)}:${info.port}`,
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
          }),
      });
    });
    server.once("error", reject);
  });
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
