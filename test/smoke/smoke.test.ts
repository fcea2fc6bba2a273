// End-to-end smoke tests of the entry points as users run them: a compute shader under Bun and
// Node, the CLI self-check, and the server under both runtimes.
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");
const bin = (name: string) => join(root, "node_modules/.bin", name);

function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

describe("runtimes", () => {
  const smoke = join(root, "test/smoke/gpu-smoke.ts");
  for (const [name, cmd, args, via] of [
    ["bun", bin("bun"), [smoke], "dawn-node"],
    ["node", bin("tsx"), [smoke], "dawn-node"],
    // Deno has WebGPU built in: this exercises the navigator.gpu path (wgpu, not Dawn).
    ["deno", bin("deno"), ["run", "-A", "--unstable-webgpu", smoke], "navigator"],
  ] as const) {
    it(`runs a compute shader under ${name}`, () => {
      const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", timeout: 90_000 });
      expect(r.status, r.stderr).toBe(0);
      const out = lastJson(r.stdout);
      expect(out.out).toEqual([3, 6, 9, 12, 15, 18, 21, 24]);
      expect(String(out.runtime).split(" ")[0]).toBe(name);
      expect(out.via).toBe(via);
    });
  }
});

describe("cli", () => {
  it("selfcheck --json reports a working adapter", () => {
    const r = spawnSync(bin("tsx"), [join(root, "src/cli.ts"), "selfcheck", "--json"], { cwd: root, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const out = lastJson(r.stdout);
    expect(out.event).toBe("selfcheck");
    expect(out.ok).toBe(true);
    expect(out.copyGBps as number).toBeGreaterThan(0);
  });

  it("prints help, and rejects unknown commands with exit code 2", () => {
    const help = spawnSync(bin("tsx"), [join(root, "src/cli.ts"), "--help"], { encoding: "utf8" });
    expect(help.stdout).toMatch(/Usage: fulgur <command>/);
    expect(help.stdout).toMatch(/selfcheck/);
    const bad = spawnSync(bin("tsx"), [join(root, "src/cli.ts"), "frobnicate"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});

describe("server", () => {
  for (const [name, cmd] of [
    ["bun", bin("bun")],
    ["node (tsx)", bin("tsx")],
  ] as const) {
    it(`starts under ${name}, answers /health, and shuts down on SIGTERM`, async () => {
      const child = spawn(cmd, [join(root, "src/server.ts"), "--port", "0", "--store", ":memory:"], { cwd: root });
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 30_000);
        child.stdout.on("data", () => {
          const m = out.match(/listening on (http:\/\/\S+)/);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
      });
      const health = await (await fetch(`${url}/health`)).json();
      expect(health).toMatchObject({ ok: true, name: "fulgur" });
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    });
  }
});
