// docs/ARCHITECTURE.md's dependency rule, checked on the real import graph of src/**/*.ts: every
// static import, re-export, type import and literal dynamic `import("…")` (TypeScript's own
// pre-processor finds them, so comments and strings do not count). The rule table is read from
// the doc itself, so the doc and the check cannot drift apart. A computed `import(expr)` can load
// anything, so only the modules that load user code (agents) may contain one.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const SRC = join(ROOT, "src");

/** The module a file belongs to: its top-level folder under src/, or its own name (server, cli, …). */
function moduleOf(srcRelative: string): string {
  const parts = srcRelative.split("/");
  return parts.length > 1 ? parts[0] : parts[0].replace(/\.ts$/, "");
}

/** Relative specifiers a source file imports (static, re-export, type, literal dynamic). */
function importsOf(source: string): { specifiers: string[]; computedDynamic: number } {
  const specifiers = ts
    .preProcessFile(source, true, true)
    .importedFiles.map((f) => f.fileName)
    .filter((s) => s.startsWith("."));
  // import( followed by anything but a string literal, outside strings and comments (blanked first).
  const code = source
    .replace(/"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g, '""')
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "");
  const computedDynamic = [...code.matchAll(/\bimport\(\s*([^"'`\s)])/g)].length;
  return { specifiers, computedDynamic };
}

interface Rules {
  /** Module → the modules it must not import ("*" = every other module). */
  forbidden: Map<string, string[]>;
  /** Modules allowed a computed import(). */
  computedImports: string[];
}

interface Graph {
  /** file (src-relative) → imported files (src-relative) */
  edges: Map<string, string[]>;
  computed: Map<string, number>;
}

/** Every rule the graph breaks, as "file → target (rule)" lines; [] when it keeps them all. */
function violations(graph: Graph, rules: Rules): string[] {
  const out: string[] = [];
  const modules = new Set([...graph.edges.keys()].map(moduleOf));
  for (const m of modules) if (!rules.forbidden.has(m)) out.push(`module ${m} has no row in the rule table`);
  for (const [file, targets] of graph.edges) {
    const from = moduleOf(file);
    const banned = rules.forbidden.get(from) ?? [];
    for (const target of targets) {
      const to = moduleOf(target);
      if (to === from) continue;
      if (banned.includes("*") || banned.includes(to)) out.push(`${file} → ${target} (${from} must not import ${to})`);
    }
  }
  for (const [file, n] of graph.computed) {
    if (n > 0 && !rules.computedImports.includes(moduleOf(file)))
      out.push(`${file}: computed import() (${moduleOf(file)} may not load modules by computed path)`);
  }
  return out;
}

/** The rule table under "## Dependency rule" in docs/ARCHITECTURE.md. */
function readRules(markdown: string): Rules {
  const section = markdown.split(/^## Dependency rule$/m)[1]?.split(/^## /m)[0];
  if (!section) throw new Error('docs/ARCHITECTURE.md has no "## Dependency rule" section');
  const forbidden = new Map<string, string[]>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 4 || !cells[1].startsWith("`")) continue;
    const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/^src\/|\/$|\.ts$/g, ""));
    forbidden.set(names(cells[1])[0], names(cells[2]));
  }
  const computed = section.match(/computed `import\(…\)`[^:]*: ([^.\n]+)/);
  if (!computed) throw new Error("the dependency rule does not say which modules may use a computed import()");
  return { forbidden, computedImports: [...computed[1].matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/\/$/, "")) };
}

function realGraph(): Graph {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts")) files.push(path);
    }
  };
  walk(SRC);
  const edges = new Map<string, string[]>();
  const computed = new Map<string, number>();
  for (const file of files) {
    const { specifiers, computedDynamic } = importsOf(readFileSync(file, "utf8"));
    edges.set(
      relative(SRC, file),
      specifiers.map((s) => relative(SRC, resolve(dirname(file), s))),
    );
    computed.set(relative(SRC, file), computedDynamic);
  }
  return { edges, computed };
}

describe("the dependency rule", () => {
  const rules = readRules(readFileSync(join(ROOT, "docs/ARCHITECTURE.md"), "utf8"));

  it("is a table in docs/ARCHITECTURE.md covering the layers that matter", () => {
    expect(rules.forbidden.get("gpu")).toEqual(["*"]);
    for (const m of ["server", "proxy", "runner", "commands", "compose"])
      expect(rules.forbidden.get("trainer")).toContain(m);
    for (const m of ["trainer", "proxy", "runner", "store", "server"])
      expect(rules.forbidden.get("model")).toContain(m);
    for (const m of ["proxy", "runner", "trainer", "model"]) expect(rules.forbidden.get("store")).toContain(m);
  });

  it("holds on src/'s real import graph (static, type and dynamic imports)", () => {
    const graph = realGraph();
    expect(graph.edges.size).toBeGreaterThan(100);
    expect(violations(graph, rules)).toEqual([]);
  });

  it("finds every kind of import, and not ones in comments or strings", () => {
    const src = [
      'import a from "./a.ts";',
      'import type { T } from "../t.ts";',
      'export * from "./b.ts";',
      'const s = await import("../server.ts");',
      "// import { x } from './commented.ts';",
      'const text = "import(\\"./in-string.ts\\")";',
      "const m = await import(pathToFileURL(p).href);",
    ].join("\n");
    const found = importsOf(src);
    expect(found.specifiers.sort()).toEqual(["../server.ts", "../t.ts", "./a.ts", "./b.ts"]);
    expect(found.computedDynamic).toBe(1);
  });

  it("reports a violation: a dynamic import of the server from the trainer, a computed import, an unlisted module", () => {
    const graph: Graph = {
      edges: new Map([
        ["trainer/trainer.ts", ["trainer/algorithm.ts", "server.ts"]],
        ["trainer/algorithm.ts", ["store/types.ts"]],
        ["gpu/device.ts", ["model/model.ts"]],
        ["newthing/x.ts", []],
      ]),
      computed: new Map([["trainer/algorithm.ts", 1]]),
    };
    const synthetic: Rules = {
      forbidden: new Map([
        ["trainer", ["server", "proxy"]],
        ["gpu", ["*"]],
        ["store", []],
        ["server", []],
        ["model", []],
      ]),
      computedImports: ["runner"],
    };
    expect(violations(graph, synthetic)).toEqual([
      "module newthing has no row in the rule table",
      "trainer/trainer.ts → server.ts (trainer must not import server)",
      "gpu/device.ts → model/model.ts (gpu must not import model)",
      "trainer/algorithm.ts: computed import() (trainer may not load modules by computed path)",
    ]);
    // The real trainer/ imports neither the server nor the proxy nor the runner.
    const real = realGraph();
    const trainerTargets = [...real.edges]
      .filter(([f]) => moduleOf(f) === "trainer")
      .flatMap(([, t]) => t.map(moduleOf));
    for (const m of ["server", "proxy", "runner", "commands", "compose"]) expect(trainerTargets).not.toContain(m);
  });
});
