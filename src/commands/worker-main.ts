// Process entry for `fulgur worker` alone (tests spawn it without the other verbs' imports):
// `tsx src/commands/worker-main.ts --server URL --agent ./agent.ts --concurrency 8`.
import { runWorker } from "./worker.ts";

runWorker(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`fulgur worker: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
