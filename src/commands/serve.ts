// `fulgur serve`: the server until SIGINT/SIGTERM. Its flags and start-up live with the server
// (src/server.ts also runs as a script of its own).
import { runServer, SERVER_USAGE } from "../server.ts";
import type { Command } from "./command.ts";

export const command: Command = {
  summary: "serve the OpenAI-compatible API, the store API and the dashboard",
  usage: SERVER_USAGE.replace(/^Usage: /, ""),
  run: runServer,
};
