// A separate OS process that claims rollouts from a shared store file until none are left,
// finishing each; prints the claimed rollout ids as one JSON line. Used by libsql.test.ts to
// exercise real cross-process locking (busy timeout, BEGIN IMMEDIATE). It opens the store, says
// "ready", and starts claiming only when the parent writes a line to stdin, so all workers
// contend at once instead of the first-started one taking everything.
import { once } from "node:events";
import { openStore } from "../../src/store/index.ts";

const [url, workerId] = process.argv.slice(2);
if (!url || !workerId) throw new Error("usage: claim-worker.ts <store url> <worker id>");
const store = await openStore(url);
process.stdout.write("ready\n");
await once(process.stdin, "data");
const claimed: string[] = [];
for (;;) {
  const claim = await store.claimRollout({ workerId });
  if (!claim) break;
  claimed.push(claim.rollout.id);
  await store.addSpans([{ attemptId: claim.attempt.id, name: "work", startTime: Date.now() }]);
  await store.finishAttempt(claim.attempt.id, { status: "succeeded", reward: 1 });
}
await store.close();
process.stdout.write(`${JSON.stringify(claimed)}\n`);
process.stdin.destroy();
