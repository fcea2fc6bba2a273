// Regenerates docs/dashboard.png: the dashboard at 1280×900 in headless Chromium, with a
// rollout's trace open, over the seeded test store or (--store) a real run's store, where it opens
// the last rewarded training rollout.
//   npx tsx test/dashboard/screenshot.ts [out.png] [--store runs/demo-seed-1/store.db]

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openStore } from "../../src/store/libsql.ts";
import type { Store } from "../../src/store/types.ts";
import { launchChromium, serveDashboard } from "./harness.ts";
import { openSeededStore } from "./seed.ts";

const { values, positionals } = parseArgs({ options: { store: { type: "string" } }, allowPositionals: true });
const out = positionals[0] ?? fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));

async function open(): Promise<{ store: Store; rolloutId: string }> {
  if (!values.store) {
    const seeded = await openSeededStore();
    return { store: seeded.store, rolloutId: seeded.toolRolloutId };
  }
  const store = await openStore(`file:${values.store}`);
  const rewarded = (await store.listRollouts({ mode: "train", status: "succeeded", order: "desc", limit: 100 })).find(
    (r) => r.finalReward === 1,
  );
  if (!rewarded) throw new Error(`${values.store} has no rewarded training rollout`);
  return { store, rolloutId: rewarded.id };
}

const { store, rolloutId } = await open();
const server = await serveDashboard(store);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${server.url}/#rollout=${rolloutId}`);
  await page.locator(".llm-call").first().waitFor();
  await page.locator("polyline").first().waitFor();
  // Scroll the trace panel (its header stays pinned) so the spans and the first LLM call, with
  // its tool call, are in view.
  await page.evaluate(() => {
    const panel = document.querySelector("#trace") as HTMLElement;
    const spans = Array.from(panel.querySelectorAll("h3")).find((h) => h.textContent === "Spans") as HTMLElement;
    const head = panel.querySelector(".trace-head") as HTMLElement;
    panel.scrollTop = spans.offsetTop - head.offsetHeight - 8;
  });
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
  await store.close();
}
