// Regenerates docs/dashboard.png: the dashboard over the seeded store at 1280×900 in headless
// Chromium, with a rollout's trace open. Run: npx tsx test/dashboard/screenshot.ts [out.png]
import { fileURLToPath } from "node:url";
import { launchChromium, serveDashboard } from "./harness.ts";
import { openSeededStore } from "./seed.ts";

const out = process.argv[2] ?? fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));
const seeded = await openSeededStore();
const server = await serveDashboard(seeded.store);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${server.url}/#rollout=${seeded.toolRolloutId}`);
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
  await seeded.store.close();
}
