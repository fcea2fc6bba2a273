// End-to-end test of the training dashboard: a real Hono server (store API + dashboard) over a
// seeded in-memory libSQL store, driven by Debian's headless Chromium through playwright-core.
// Checks what a person would: the page loads cleanly, charts plot every recorded point, the
// rollouts table lists the store's rollouts, a trace shows LLM calls with tool calls, new data
// appears without reloading, and polling pauses while the tab is hidden. Plus the HTTP contract
// of the routes (content types, caching, CSP) without a browser.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DASHBOARD_ASSETS, dashboardRoutes } from "../../src/dashboard/routes.ts";
import type { RunningServer } from "../../src/http/serve.ts";
import { openStore } from "../../src/store/libsql.ts";
import { launchChromium, serveDashboard } from "./harness.ts";
import { openSeededStore, type SeededStore } from "./seed.ts";

describe("dashboard routes", () => {
  const app = dashboardRoutes();

  it("serves the page and each asset with its content type, no-cache and an ETag", async () => {
    const expected: Record<string, string> = {
      "/": "text/html",
      "/dashboard/app.js": "text/javascript",
      "/dashboard/charts.js": "text/javascript",
      "/dashboard/trace.js": "text/javascript",
      "/dashboard/dom.js": "text/javascript",
      "/dashboard/style.css": "text/css",
    };
    for (const [path, type] of Object.entries(expected)) {
      const response = await app.request(path);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type"), path).toBe(`${type}; charset=utf-8`);
      expect(response.headers.get("cache-control"), path).toBe("no-cache");
      expect(response.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(response.headers.get("etag"), path).toMatch(/^"[\w-]{22}"$/);
      expect((await response.text()).length, path).toBeGreaterThan(500);
    }
  });

  it("answers a matching If-None-Match with 304 and no body", async () => {
    const etag = (await app.request("/dashboard/app.js")).headers.get("etag") ?? "";
    const cached = await app.request("/dashboard/app.js", { headers: { "if-none-match": `W/"x", ${etag}` } });
    expect(cached.status).toBe(304);
    expect(await cached.text()).toBe("");
    const stale = await app.request("/dashboard/app.js", { headers: { "if-none-match": '"stale"' } });
    expect(stale.status).toBe(200);
  });

  it("locks the page to its own origin and serves nothing else", async () => {
    const csp = (await app.request("/")).headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect((await app.request("/dashboard/../package.json")).status).toBe(404);
    expect((await app.request("/dashboard/nope.js")).status).toBe(404);
  });

  it("stays small (the whole dashboard under 40 KB)", () => {
    const total = [...DASHBOARD_ASSETS.values()].reduce((sum, a) => sum + Buffer.byteLength(a.body), 0);
    expect(total).toBeLessThan(40 * 1024);
  });
});

describe("dashboard in headless Chromium", () => {
  let seeded: SeededStore;
  let server: RunningServer;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];
  const apiRequests: string[] = [];

  beforeAll(async () => {
    seeded = await openSeededStore();
    server = await serveDashboard(seeded.store);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(error.message));
    page.on("request", (request) => {
      if (request.url().includes("/api/v1/")) apiRequests.push(request.url());
    });
    await page.goto(server.url + "/");
    await page.locator("#charts polyline").first().waitFor();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await seeded?.store.close();
  });

  const pointCount = (key: string) =>
    page
      .locator(`polyline[data-key="${key}"]`)
      .getAttribute("points")
      .then((points) => (points ?? "").trim().split(/\s+/).filter(Boolean).length);

  it("loads with no console errors and shows the run status", async () => {
    await expect.poll(() => page.locator("#stat-step").textContent()).toBe("20");
    expect(await page.locator("#stat-adapter").textContent()).toBe("v3");
    expect(await page.locator("#stat-rollouts").textContent()).toBe(String(seeded.totalRollouts));
    const count = (status: string) => page.locator(`#status-counts [data-status="${status}"]`).textContent();
    expect(await count("succeeded")).toBe(String(seeded.ids.succeeded.length + 1));
    expect(await count("queuing")).toBe("2");
    expect(await count("running")).toBe("1");
    expect(await count("failed")).toBe("1");
    expect(await count("cancelled")).toBe("1");
    expect(consoleErrors).toEqual([]);
  });

  it("plots every recorded point, grouped into one chart per metric family", async () => {
    const groups = await page
      .locator("#charts figure")
      .evaluateAll((figs) => figs.map((f) => f.getAttribute("data-group")));
    expect(groups).toEqual(["reward", "accuracy", "loss", "kl", "clip", "entropy", "grad", "speed"]);
    expect(await pointCount("rewardMean")).toBe(seeded.steps);
    expect(await pointCount("rewardStd")).toBe(seeded.steps);
    expect(await pointCount("valAccuracy")).toBe(seeded.valSteps);
    for (const key of ["loss", "kl", "clipFraction", "entropy", "gradNorm", "tokensPerSecond"]) {
      expect(await pointCount(key), key).toBe(seeded.steps);
    }
    const label = await page.locator('figure[data-group="reward"] svg').getAttribute("aria-label");
    expect(label).toMatch(/^Reward by training step; last rewardMean 0\.\d+, rewardStd 0\.\d+$/);
  });

  it("lists every seeded rollout, newest first, and filters by status and mode", async () => {
    const ids = await page
      .locator("#rollouts-body tr")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    expect(ids).toHaveLength(seeded.totalRollouts);
    expect(ids[0]).toBe(seeded.ids.cancelled);
    expect(new Set(ids)).toEqual(
      new Set([
        ...seeded.ids.succeeded,
        seeded.ids.val,
        seeded.ids.failed,
        seeded.ids.running,
        ...seeded.ids.queued,
        seeded.ids.cancelled,
      ]),
    );
    const failedRow = page.locator(`#rollouts-body tr[data-id="${seeded.ids.failed}"]`);
    expect(await failedRow.locator(".badge").textContent()).toBe("failed");
    expect(await failedRow.locator("td").nth(5).textContent()).toBe("2");

    await page.selectOption("#filter-status", "failed");
    const failedOnly = await page
      .locator("#rollouts-body tr")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    expect(failedOnly).toEqual([seeded.ids.failed]);
    await page.selectOption("#filter-status", "");
    await page.selectOption("#filter-mode", "val");
    const valOnly = await page
      .locator("#rollouts-body tr")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    expect(valOnly).toEqual([seeded.ids.val]);
    await page.selectOption("#filter-mode", "");
  });

  it("opens a rollout's trace: spans in order, LLM calls with messages, tool call and result, rewards", async () => {
    await page.locator(`button[data-rollout="${seeded.toolRolloutId}"]`).click();
    const trace = page.locator("#trace");
    await trace.locator(".llm-call").first().waitFor();
    expect(await trace.locator("#trace-title code").textContent()).toBe(seeded.toolRolloutId);
    expect(await trace.locator(".timeline .seq").allTextContents()).toEqual(["#1", "#2", "#3", "#4"]);
    expect(await trace.locator(".timeline .kind").allTextContents()).toEqual(["llm", "tool", "llm", "reward"]);

    const calls = trace.locator(".llm-call");
    expect(await calls.count()).toBe(2);
    const first = calls.nth(0);
    expect(await first.locator("summary").textContent()).toContain("finish tool_calls");
    expect(await first.locator("summary").textContent()).toContain("96 prompt + 24 completion tokens");
    expect(await first.locator(".msg .role").allTextContents()).toEqual(["system", "user", "assistant"]);
    expect(await first.locator(".msg.response .tool-name").textContent()).toBe("calculator");
    const args = await first.locator(".msg.response .tool-args").textContent();
    expect(args).toBe(JSON.stringify(seeded.toolArguments, null, 2));

    const second = calls.nth(1);
    expect(await second.locator("summary").textContent()).toContain("finish stop");
    const toolResult = second.locator(".msg.r-tool");
    expect(await toolResult.locator(".msg-head").textContent()).toContain("calculator");
    expect(JSON.parse((await toolResult.locator(".msg-text").textContent()) ?? "")).toHaveProperty("result");
    expect(await second.locator(".msg.response .msg-text").textContent()).toMatch(/^\d+(\.\d+)?$/);

    const rewardCells = await trace.locator("section.trace-section").last().locator("tbody td").allTextContents();
    expect(rewardCells.slice(0, 3)).toEqual(["1", "1", "correct 1, format 1"]);
    expect(consoleErrors).toEqual([]);
  });

  it("opens a trace from the keyboard and closes it again", async () => {
    const button = page.locator(`button[data-rollout="${seeded.ids.failed}"]`);
    await button.focus();
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator("#trace-title code").textContent()).toBe(seeded.ids.failed);
    expect(await page.locator("#trace .error-text").allTextContents()).toEqual([
      "calculator: tool timed out after 3 s",
      "calculator: tool timed out after 3 s",
    ]);
    await page.locator("#trace button.close").click();
    await expect.poll(() => page.locator("#trace").isHidden()).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.getAttribute("data-rollout"))).toBe(seeded.ids.failed);
  });

  it("shows new training steps and rollouts within a few seconds, without reloading", async () => {
    const marker = await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 42;
      return 42;
    });
    await seeded.store.addTrainingStep({ step: 21, metrics: { rewardMean: 0.93, rewardStd: 0.2, valAccuracy: 0.85 } });
    const [fresh] = await seeded.store.enqueueRollouts([{ input: { question: "1 + 1?" }, groupId: "grp-new" }]);
    await expect.poll(() => page.locator("#stat-step").textContent(), { timeout: 8000 }).toBe("21");
    await expect.poll(() => pointCount("rewardMean"), { timeout: 8000 }).toBe(seeded.steps + 1);
    expect(await pointCount("valAccuracy")).toBe(seeded.valSteps + 1);
    await expect
      .poll(() => page.locator("#rollouts-body tr").first().getAttribute("data-id"), { timeout: 8000 })
      .toBe(fresh.id);
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(marker);
    expect(consoleErrors).toEqual([]);
  });

  it("stops polling while the tab is hidden and resumes when it is shown", async () => {
    const setHidden = (hidden: boolean) =>
      page.evaluate((value) => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => value });
        document.dispatchEvent(new Event("visibilitychange"));
      }, hidden);
    await setHidden(true);
    await page.waitForTimeout(600); // lets a request already in flight finish
    const before = apiRequests.length;
    await page.waitForTimeout(4500);
    expect(apiRequests.length).toBe(before);
    await setHidden(false);
    await expect.poll(() => apiRequests.length, { timeout: 3000 }).toBeGreaterThan(before);
  });
});

describe("dashboard over an empty store", () => {
  it("says there is nothing yet instead of failing, and fills in once data arrives", async () => {
    const store = await openStore(":memory:");
    const server = await serveDashboard(store);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(server.url + "/");
      await expect.poll(() => page.locator("#charts .empty").textContent()).toBe("No training steps recorded yet.");
      expect(await page.locator("#rollouts-body .empty").textContent()).toBe("No rollouts match.");
      expect(await page.locator("#stat-adapter").textContent()).toBe("base");
      expect(await page.locator("#error").isHidden()).toBe(true);
      await store.addTrainingStep({ step: 0, metrics: { loss: 1.5 } });
      await store.addResources("adapter", { path: "adapters/step-0" });
      await expect
        .poll(() => page.locator('polyline[data-key="loss"]').getAttribute("data-count"), { timeout: 8000 })
        .toBe("1");
      await expect.poll(() => page.locator("#stat-adapter").textContent(), { timeout: 8000 }).toBe("v1");
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
      await server.close();
      await store.close();
    }
  });
});
