// Loading an agent function from a module path (`fulgur worker --agent`, `fulgur train`'s
// "agent"): its default export, or its named export `agent`.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Agent } from "./types.ts";

/** Loads an agent module and returns its default export or named export `agent`. */
export async function loadAgent(path: string): Promise<Agent> {
  const url = pathToFileURL(resolve(path)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot load agent module ${path}: ${(error as Error).message}`);
  }
  const agent = typeof mod.default === "function" ? mod.default : mod.agent;
  if (typeof agent !== "function") {
    throw new Error(`agent module ${path} must export the agent function as default or as \`agent\``);
  }
  return agent as Agent;
}
