// A vitest reporter that ends the run with the list of test files that failed or never finished,
// and writes it to .fulgur/test-summary.json. CI shows only the tail of a long log, and a test
// worker that dies (a native crash in a driver) leaves its file neither passed nor failed: this
// names it. `scripts/bootstrap.mjs test` reads the JSON to rerun files whose worker died.

import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Reporter, SerializedError, TestModule } from "vitest/node";

export interface TestSummary {
  /** Files with a failed test or a failed hook/import. */
  failed: { file: string; tests: string[] }[];
  /** Files with tests that never finished (their worker died). */
  unfinished: { file: string; tests: string[] }[];
  /** Errors outside any test (e.g. "Worker exited unexpectedly"). */
  errors: string[];
}

export default class TestSummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, errors: ReadonlyArray<SerializedError>): void {
    const root = process.cwd();
    const summary: TestSummary = { failed: [], unfinished: [], errors: [] };
    for (const module of modules) {
      const file = relative(root, module.moduleId);
      const failed: string[] = [];
      const unfinished: string[] = [];
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "failed") failed.push(test.fullName);
        else if (state === "pending") unfinished.push(test.fullName);
      }
      if (failed.length > 0 || (module.state() === "failed" && unfinished.length === 0))
        summary.failed.push({ file, tests: failed });
      if (unfinished.length > 0) summary.unfinished.push({ file, tests: unfinished });
    }
    for (const error of errors) {
      const cause = (error.cause as SerializedError | undefined)?.message;
      summary.errors.push([error.message, cause].filter(Boolean).join(": "));
    }
    mkdirSync(join(root, ".fulgur"), { recursive: true });
    writeFileSync(join(root, ".fulgur/test-summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
    if (summary.failed.length + summary.unfinished.length + summary.errors.length === 0) return;
    const lines = ["", "[fulgur] test files that did not pass:"];
    for (const f of summary.failed) lines.push(`  failed      ${f.file}  ${f.tests.join(" | ")}`);
    for (const f of summary.unfinished) lines.push(`  unfinished  ${f.file}  ${f.tests.join(" | ")}`);
    for (const e of summary.errors) lines.push(`  error       ${e}`);
    console.error(lines.join("\n"));
  }
}
