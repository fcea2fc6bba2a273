// What `fulgur train` and `fulgur eval` read from files: task sets and agent modules.
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Agent } from "../runner/types.ts";
import type { JsonValue } from "../store/types.ts";

/** Loads an agent function from a module path. */
export async function importAgent(path: string): Promise<Agent> {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown; agent?: unknown };
  const agent = mod.agent ?? mod.default;
  if (typeof agent !== "function")
    throw new Error(`${path} exports no agent function (export default or export const agent)`);
  return agent as Agent;
}

/** Reads tasks from a JSON array or JSONL file. */
export async function readTasks(path: string): Promise<JsonValue[]> {
  const text = (await readFile(path, "utf8")).trim();
  if (text.startsWith("[")) return JSON.parse(text) as JsonValue[];
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as JsonValue;
      } catch {
        throw new Error(`${path}:${i + 1} is not valid JSON`);
      }
    });
}
