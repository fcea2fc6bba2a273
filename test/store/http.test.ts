// The shared Store suite through HttpStore → a real Hono server on 127.0.0.1 → a libSQL file
// store, plus what only the HTTP layer has: error bodies, auth, base64 blobs, the OpenAPI document.
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  HttpStore,
  openStore,
  type Store,
  StoreValidationError,
  storeRoutes,
} from "../../src/store/index.ts";
import { ManualClock, storeCases } from "./store.cases.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function fileStore(clock?: ManualClock): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), "fulgur-store-http-"));
  dirs.push(dir);
  return openStore(`file:${join(dir, "store.db")}`, { clock: clock?.read });
}

/** Serves `store` on a free port of 127.0.0.1; returns its base URL and a closer. */
async function serveStore(
  store: Store,
  apiKey?: string,
): Promise<{ url: string; app: Hono; close: () => Promise<void> }> {
  const app = new Hono().route("/", storeRoutes(store, { apiKey, maxWaitMs: 200 }));
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s as Server));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

storeCases("HTTP store (HttpStore → Hono server → libSQL file)", async () => {
  const clock = new ManualClock();
  const backend = await fileStore(clock);
  const server = await serveStore(backend);
  return {
    store: new HttpStore(server.url),
    connect: async () => new HttpStore(server.url),
    clock,
    close: async () => {
      await server.close();
      await backend.close();
    },
  };
});

describe("store HTTP API", () => {
  let backend: Store;
  let server: Awaited<ReturnType<typeof serveStore>>;
  beforeAll(async () => {
    backend = await fileStore();
    server = await serveStore(backend);
    return async () => {
      await server.close();
      await backend.close();
    };
  });

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it("answers bad input with 400 and an OpenAI-style error body", async () => {
    const bad = await call("POST", "/api/v1/rollouts", { input: 1, mode: "prod" });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({
      error: {
        message: expect.stringContaining("mode"),
        type: "invalid_request_error",
        param: "mode",
        code: "invalid_input",
      },
    });
    const malformed = await call("POST", "/api/v1/rollouts", "{not json");
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatchObject({ code: "invalid_json" });
    const badQuery = await call("GET", "/api/v1/rollouts?limit=ten");
    expect(badQuery).toMatchObject({ status: 400, body: { error: { param: "limit" } } });
    const missing = await call("GET", "/api/v1/rollouts/ro-nope");
    expect(missing).toMatchObject({
      status: 404,
      body: { error: { type: "not_found_error", code: "rollout_not_found" } },
    });
    const noRoute = await call("GET", "/api/v1/rollouts/ro-1/nothing-here");
    expect(noRoute).toMatchObject({ status: 404, body: { error: { code: "route_not_found" } } });
    const wrongMethod = await call("DELETE", "/api/v1/rollouts");
    // A known path asked with another method is 405 (issue 15), not 404.
    expect(wrongMethod).toMatchObject({ status: 405, body: { error: { code: "method_not_allowed" } } });
  });

  it("answers a state conflict with 409", async () => {
    const rollout = await call("POST", "/api/v1/rollouts", { input: "x" });
    expect(rollout.status).toBe(201);
    await call("POST", `/api/v1/rollouts/${rollout.body.id}/cancel`);
    const again = await call("POST", `/api/v1/rollouts/${rollout.body.id}/cancel`);
    expect(again).toMatchObject({ status: 409, body: { error: { type: "conflict_error", code: "rollout_finished" } } });
  });

  it("carries token ids and logprobs as base64 of little-endian bytes (JSON arrays accepted)", async () => {
    const ids = new Uint32Array([151935, 0, 4294967295]);
    const logprobs = new Float32Array([-0.25, -12.5, -1e-7]);
    const b64 = (a: Uint32Array | Float32Array) => Buffer.from(a.buffer).toString("base64");
    const posted = await call("POST", "/api/v1/transitions", {
      transitions: [
        { promptIds: b64(ids), responseIds: b64(ids), responseLogprobs: b64(logprobs) },
        { promptIds: [1, 2], responseIds: [3], responseLogprobs: [-0.5] },
      ],
    });
    expect(posted.status).toBe(201);
    const listed = await call("GET", "/api/v1/transitions?unattributed=true");
    const data = listed.body.data as { promptIds: string; responseLogprobs: string }[];
    expect(data[0].promptIds).toBe(b64(ids));
    expect(data[0].responseLogprobs).toBe(b64(logprobs));
    expect(data[1].promptIds).toBe(b64(new Uint32Array([1, 2])));
    const corrupt = await call("POST", "/api/v1/transitions", { transitions: [{ promptIds: "abc", responseIds: "" }] });
    expect(corrupt).toMatchObject({ status: 400, body: { error: { param: "transitions[0].promptIds" } } });
    // The client validates before encoding, so -1 cannot silently become 4294967295.
    const client = new HttpStore(server.url);
    await expect(client.addTransitions([{ promptIds: [-1], responseIds: [] }])).rejects.toBeInstanceOf(
      StoreValidationError,
    );
  });

  it("documents every registered route in the OpenAPI 3.1 document", async () => {
    const doc = await call("GET", "/api/v1/openapi.json");
    expect(doc.body.openapi).toBe("3.1.0");
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;
    const registered = server.app.routes.filter((r) => r.method !== "ALL");
    expect(registered.length).toBeGreaterThan(20);
    for (const route of registered) {
      const openApiPath = route.path.replace(/:([A-Za-z]+)/g, "{$1}");
      expect(paths[openApiPath]?.[route.method.toLowerCase()], `${route.method} ${route.path}`).toBeDefined();
    }
    const enqueue = paths["/api/v1/rollouts"].post as { requestBody: { content: Record<string, { schema: object }> } };
    expect(enqueue.requestBody.content["application/json"].schema).toMatchObject({ type: "object" });
  });

  it("leaves other /api/v1 paths to the app that mounts it", async () => {
    const parent = new Hono().route("/", storeRoutes(backend));
    parent.get("/api/v1/dashboard", (c) => c.text("dashboard"));
    const response = await parent.request("/api/v1/dashboard");
    expect(await response.text()).toBe("dashboard");
    expect((await parent.request("/api/v1/rollouts/ro-x/nope")).status).toBe(404);
  });

  it("requires the API key when one is configured", async () => {
    const guarded = await serveStore(backend, "sekret");
    try {
      await expect(new HttpStore(guarded.url).listRollouts()).rejects.toBeInstanceOf(AuthenticationError);
      await expect(new HttpStore(guarded.url, { apiKey: "wrong" }).listRollouts()).rejects.toMatchObject({
        status: 401,
        code: "invalid_api_key",
      });
      expect(Array.isArray(await new HttpStore(guarded.url, { apiKey: "sekret" }).listRollouts())).toBe(true);
      expect((await fetch(`${guarded.url}/api/v1/openapi.json`)).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });

  it("long-polls waits in bounded slices until the client's own timeout", async () => {
    const client = new HttpStore(server.url, { maxWaitMs: 100 });
    const rollout = await client.enqueueRollout({ input: 1, mode: "test" });
    const claim = (await client.claimRollout({ workerId: "w", mode: "test" }))!;
    // The server bounds each request to 200 ms, so this spans several requests.
    setTimeout(() => void client.finishAttempt(claim.attempt.id, { status: "succeeded" }), 450);
    const ended = await client.waitForRollouts([rollout.id], { timeoutMs: 10_000, pollMs: 20 });
    expect(ended.map((r) => r.status)).toEqual(["succeeded"]);
  });

  it("reports an unreachable server as a StoreError, and a bad base URL as invalid input", async () => {
    expect(() => new HttpStore("not a url")).toThrow(StoreValidationError);
    await expect(new HttpStore("http://127.0.0.1:1").listRollouts()).rejects.toMatchObject({
      code: "store_unreachable",
    });
  });
});
