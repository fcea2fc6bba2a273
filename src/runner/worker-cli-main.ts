// Process entry for `fulgur worker` until the lead wires it into src/cli.ts:
// `tsx src/runner/worker-cli-main.ts --server URL --agent ./agent.ts --concurrency 8`.
import { runWorker } from "./worker-cli.ts";

runWorker(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`fulgur worker: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
