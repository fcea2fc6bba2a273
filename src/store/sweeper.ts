// Periodic expiry for whoever hosts a store (the server process, or a trainer using a local
// file): calls `store.sweep()` on an interval so silent attempts are marked unresponsive/timeout
// and their rollouts requeued even when no worker is claiming.
import type { Store, SweepResult } from "./types.ts";

export interface SweeperOptions {
  /** Time between sweeps, ms (default 5 s). */
  intervalMs?: number;
  /** Called with each sweep's counts (e.g. for logging). */
  onSweep?: (result: SweepResult) => void;
  /** Called when a sweep fails; the sweeper keeps running. Default: console.error. */
  onError?: (error: unknown) => void;
}

/**
 * Starts sweeping `store` every `intervalMs`. The timer does not keep the process alive.
 * Returns `stop()`, which resolves once a sweep in flight has finished.
 */
export function startSweeper(store: Store, options: SweeperOptions = {}): { stop: () => Promise<void> } {
  const intervalMs = options.intervalMs ?? 5000;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new Error(`sweeper intervalMs must be a positive number of milliseconds, got ${intervalMs}`);
  }
  const onError = options.onError ?? ((error: unknown) => console.error("store sweep failed:", error));
  let inFlight: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (inFlight) return; // a slow sweep is never overlapped by the next one
    inFlight = store
      .sweep()
      .then((result) => options.onSweep?.(result), onError)
      .finally(() => {
        inFlight = null;
      });
  }, intervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await inFlight;
    },
  };
}
