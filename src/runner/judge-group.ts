// Relative judging across concurrent rollouts: each agent runs one rollout and asks for its own
// score (`ctx.judge.relative`), but a GRPO group is judged in one call that sees all of its
// trajectories. `GroupJudge` holds each submission until every rollout of its group that can
// still submit has done so — judged by the store: the group's rollouts not yet final — then makes
// one judge call for the group and answers every member. It flushes a partial group instead of
// waiting forever when its time runs out, or when the runner says no local progress is possible
// (every running attempt waits on the judge and nothing more can be claimed: fewer slots than
// the group has rollouts, or the rest of the group runs on other workers).

import type { Store } from "../store/types.ts";
import { type Judge, type JudgeVerdict, trajectoryText } from "./judge.ts";

export interface GroupJudgeOptions {
  judge: Judge;
  store: Store;
  /** Longest wait for the rest of a group after its first submission, ms (default 30 000). */
  groupTimeoutMs?: number;
  /** How often to look for the group's other rollouts in the store, ms (default 200). */
  pollMs?: number;
  /** True when no local progress can happen (see the header); checked on every look. */
  stalled?: () => boolean;
}

/** A member's verdict plus how many trajectories the judge compared it with (itself included). */
export interface GroupVerdict extends JudgeVerdict {
  candidates: number;
}

interface Member {
  rolloutId: string;
  trajectory: unknown;
  resolve(v: GroupVerdict): void;
  reject(e: unknown): void;
  detach(): void;
}

interface Batch {
  key: string;
  groupId: string;
  task: unknown;
  judge: Judge;
  rubric: string | undefined;
  members: Map<string, Member>;
  firstAt: number;
}

/** Judges are told apart by identity: submissions to different judges never share a call. */
const judgeNumbers = new WeakMap<Judge, number>();
let nextJudgeNumber = 1;
function judgeNumber(judge: Judge): number {
  let n = judgeNumbers.get(judge);
  if (n === undefined) {
    n = nextJudgeNumber++;
    judgeNumbers.set(judge, n);
  }
  return n;
}

const ACTIVE_STATUSES = ["queuing", "preparing", "running", "requeuing"] as const;

export class GroupJudge {
  readonly judge: Judge;
  readonly #store: Store;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #stalled: () => boolean;
  readonly #batches = new Map<string, Batch>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #checking: Promise<void> | null = null;
  #again = false;
  #lastSubmitAt = 0;

  constructor(options: GroupJudgeOptions) {
    this.judge = options.judge;
    this.#store = options.store;
    this.#timeoutMs = options.groupTimeoutMs ?? 30_000;
    this.#pollMs = options.pollMs ?? 200;
    this.#stalled = options.stalled ?? (() => false);
  }

  /** Submissions waiting for the rest of their group. */
  waiting(): number {
    let n = 0;
    for (const b of this.#batches.values()) n += b.members.size;
    return n;
  }

  /** When the latest submission arrived (Date.now()); 0 before any. */
  get lastSubmitAt(): number {
    return this.#lastSubmitAt;
  }

  /**
   * Scores `trajectory` relative to the other submissions of the same group and task. Rejects
   * with the signal's reason if it aborts first, or with the judge's error for the whole group.
   */
  submit(input: {
    groupId: string;
    rolloutId: string;
    task: unknown;
    trajectory: unknown;
    signal?: AbortSignal;
    /** The agent's own judge instead of this one's (batched apart from other judges). */
    judge?: Judge;
    rubric?: string;
  }): Promise<GroupVerdict> {
    const { groupId, rolloutId, signal, rubric } = input;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const judge = input.judge ?? this.judge;
    const key = JSON.stringify([groupId, trajectoryText(input.task), judgeNumber(judge), rubric ?? null]);
    let batch = this.#batches.get(key);
    if (!batch) {
      batch = { key, groupId, task: input.task, judge, rubric, members: new Map(), firstAt: Date.now() };
      this.#batches.set(key, batch);
    }
    if (batch.members.has(rolloutId)) {
      return Promise.reject(new Error(`ctx.judge.relative: rollout ${rolloutId} already submitted to its group`));
    }
    const owner = batch;
    const promise = new Promise<GroupVerdict>((resolve, reject) => {
      const onAbort = () => {
        owner.members.delete(rolloutId);
        if (owner.members.size === 0 && this.#batches.get(owner.key) === owner) this.#batches.delete(owner.key);
        reject(signal?.reason);
        this.check();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      owner.members.set(rolloutId, {
        rolloutId,
        trajectory: input.trajectory,
        resolve,
        reject,
        detach: () => signal?.removeEventListener("abort", onAbort),
      });
    });
    this.#lastSubmitAt = Date.now();
    this.check();
    return promise;
  }

  /** Looks at every waiting group now (the runner calls this when its state changes). */
  check(): void {
    if (this.#checking) {
      this.#again = true;
      return;
    }
    this.#checking = (async () => {
      do {
        this.#again = false;
        await this.#checkAll();
      } while (this.#again);
    })().finally(() => {
      this.#checking = null;
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer !== null || this.#batches.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.check();
    }, this.#pollMs);
  }

  async #checkAll(): Promise<void> {
    const stalled = this.#batches.size > 0 && this.#stalled();
    for (const batch of [...this.#batches.values()]) {
      if (stalled || Date.now() - batch.firstAt >= this.#timeoutMs || (await this.#complete(batch))) {
        this.#flush(batch);
      }
    }
  }

  /** Every rollout of the group that may still submit has submitted. */
  async #complete(batch: Batch): Promise<boolean> {
    try {
      const active = await this.#store.listRollouts({ groupId: batch.groupId, status: [...ACTIVE_STATUSES] });
      return active.every((r) => batch.members.has(r.id));
    } catch {
      return false; // the store is unreachable for now: look again next time; the timeout is the backstop
    }
  }

  #flush(batch: Batch): void {
    if (this.#batches.get(batch.key) !== batch || batch.members.size === 0) return;
    this.#batches.delete(batch.key);
    // Candidates in rollout-id order, so the same group gets the same prompt (and cache key).
    const members = [...batch.members.values()].sort((a, b) => (a.rolloutId < b.rolloutId ? -1 : 1));
    for (const m of members) m.detach();
    const trajectories = members.map((m) => m.trajectory);
    const options = batch.rubric === undefined ? {} : { rubric: batch.rubric };
    const verdicts =
      members.length === 1
        ? batch.judge.score(batch.task, trajectories[0], options).then((v) => [v])
        : batch.judge.scoreGroup(batch.task, trajectories, options);
    verdicts.then(
      (list) => {
        members.forEach((m, i) => {
          m.resolve({ ...list[i], candidates: members.length });
        });
      },
      (error) => {
        for (const m of members) m.reject(error);
      },
    );
  }
}
