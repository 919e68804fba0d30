// Bulkheads for the external systems: each (IAM, FlyteAdmin) gets a lane with its own bounded number of
// calls in flight, so a slow, black-holed or throttling system holds its own lane and never a reconcile
// worker. Workers run the Kubernetes step inline (access changes must not wait for anyone's IAM or Flyte
// call) and hand each external step to its lane:
//
// * A step that settles at once (its converged cache answers, no I/O) is used inline, as before.
// * Otherwise it runs on in the lane as a job; the reconcile records the step as Progressing (running) or
//   Waiting (queued for a free slot) and ends. When the job settles, the lane asks for the key to be
//   reconciled again, and that reconcile takes the outcome (once) and goes on to the next step.
//
// One job per key per lane: a second request for the same key while one runs or waits replaces the waiting
// one (latest desired state wins) and never runs two calls for one workspace in one system at a time. A
// reconcile asks with a token (the desired state it wants); an outcome for another token is discarded.
import { type Clock, systemClock, type Timer } from '../kinds/clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { errorOutcome, type StepName, type StepOutcome } from './types.js';

export type LaneAnswer =
  | { kind: 'settled'; outcome: StepOutcome }
  /** Running in the lane since `since` (ms, performance.now()). */
  | { kind: 'running'; since: number }
  /** Queued behind `ahead` other jobs for a free slot. */
  | { kind: 'waiting'; ahead: number };

interface Job {
  key: string;
  token: string;
  run: () => Promise<StepOutcome>;
  background: boolean;
}

export interface RequestOptions {
  /**
   * A re-check of a step already Ready for this desired state (a drift check): queued behind every job that
   * has something to change, so a resync's re-reads never delay a real change (the work queue's priorities,
   * carried into the lane).
   */
  background?: boolean;
}

interface Running {
  token: string;
  since: number;
}

export interface LaneOptions {
  system: Exclude<StepName, 'kubernetes'>;
  /** Jobs in flight at once. */
  capacity: number;
  /**
   * Called when a job of `key` settled. Returns whether the outcome matters: then the lane keeps it for the
   * next request at the same token (the caller reconciles the key again); otherwise it is dropped.
   */
  onSettled: (key: string, token: string, outcome: StepOutcome) => boolean;
  metrics?: Pick<Metrics, 'laneJobs'>;
  /** Time for "running since" and the close deadline. Default: the system clock. */
  clock?: Clock;
}

export class SystemLane {
  private readonly running = new Map<string, Running>();
  /** Keys waiting for a slot, in arrival order; each map holds each one's latest job. Urgent ones go first. */
  private readonly waiting = new Map<string, Job>();
  private readonly waitingBackground = new Map<string, Job>();
  private readonly settled = new Map<string, { token: string; outcome: StepOutcome }>();
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly o: LaneOptions) {
    if (!(o.capacity >= 1)) throw new Error(`lane ${o.system}: capacity must be at least 1`);
    this.clock = o.clock ?? systemClock;
  }

  get system(): string {
    return this.o.system;
  }

  /**
   * The outcome of `run` for `key` at `token`: at once when it settles without waiting on I/O, or when an
   * earlier job for this token has settled (taken once); otherwise where the job stands.
   */
  async request(
    key: string,
    token: string,
    run: () => Promise<StepOutcome>,
    opts: RequestOptions = {},
  ): Promise<LaneAnswer> {
    const done = this.settled.get(key);
    if (done) {
      this.settled.delete(key);
      if (done.token === token) return { kind: 'settled', outcome: done.outcome };
    }
    const job: Job = { key, token, run, background: opts.background ?? false };
    const current = this.running.get(key);
    if (current) {
      // One call per workspace per system: a newer desired state waits for the running job to end.
      if (current.token !== token) this.enqueue(job);
      this.report();
      return { kind: 'running', since: current.since };
    }
    if (this.waiting.has(key) || this.waitingBackground.has(key) || this.running.size >= this.o.capacity) {
      this.enqueue(job);
      this.report();
      return { kind: 'waiting', ahead: this.positionOf(key) };
    }
    return this.start(job, true);
  }

  /** Queues `job` as the key's latest; an urgent request for a key moves it out of the background queue. */
  private enqueue(job: Job): void {
    const wasUrgent = this.waiting.has(job.key);
    this.waiting.delete(job.key);
    this.waitingBackground.delete(job.key);
    if (job.background && !wasUrgent) this.waitingBackground.set(job.key, job);
    else this.waiting.set(job.key, job);
  }

  /** Forgets everything about `key` (its workspace is gone): a waiting job is dropped, a result discarded. */
  forget(key: string): void {
    this.waiting.delete(key);
    this.waitingBackground.delete(key);
    this.settled.delete(key);
    this.report();
  }

  /** Jobs running and waiting (for idleness checks and metrics). */
  counts(): { running: number; waiting: number } {
    return { running: this.running.size, waiting: this.waiting.size + this.waitingBackground.size };
  }

  /** Takes no more jobs, drops the waiting ones; resolves when the running ones ended or after `ms`. */
  async close(ms: number): Promise<string[]> {
    this.closed = true;
    this.waiting.clear();
    this.waitingBackground.clear();
    this.report();
    let timer: Timer | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((r) => {
        timer = this.clock.setTimer(r, ms);
      }),
    ]);
    timer?.cancel();
    return [...this.running.keys()];
  }

  private positionOf(key: string): number {
    let i = 0;
    for (const k of [...this.waiting.keys(), ...this.waitingBackground.keys()]) {
      if (k === key) return i;
      i++;
    }
    return i;
  }

  /**
   * Starts `job`. With `inline`, a job that settles before the event loop turns (no I/O: a cache answered)
   * is returned as settled and leaves nothing behind.
   */
  private async start(job: Job, inline: boolean): Promise<LaneAnswer> {
    const since = this.clock.now();
    this.running.set(job.key, { token: job.token, since });
    let result: { outcome: StepOutcome } | undefined;
    const settledNow = job.run().then(
      (outcome) => {
        result = { outcome };
      },
      (err: unknown) => {
        result = { outcome: errorOutcome(err) };
      },
    );
    if (inline) {
      await Promise.race([settledNow, new Promise<void>((r) => setImmediate(r))]);
      if (result) {
        this.running.delete(job.key);
        this.next();
        return { kind: 'settled', outcome: result.outcome };
      }
    }
    const tracked = settledNow.then(() => {
      this.running.delete(job.key);
      this.inFlight.delete(tracked);
      if (!this.closed && result && this.o.onSettled(job.key, job.token, result.outcome)) {
        this.settled.set(job.key, { token: job.token, outcome: result.outcome });
      }
      this.next();
    });
    this.inFlight.add(tracked);
    this.report();
    return { kind: 'running', since };
  }

  /** Starts waiting jobs while there are free slots (never two for one key). */
  private next(): void {
    if (this.closed) return;
    for (const queue of [this.waiting, this.waitingBackground]) {
      for (const [key, job] of queue) {
        if (this.running.size >= this.o.capacity) break;
        if (this.running.has(key)) continue;
        queue.delete(key);
        void this.start(job, false);
      }
    }
    this.report();
  }

  private report(): void {
    this.o.metrics?.laneJobs.set({ system: this.o.system, state: 'running' }, this.running.size);
    this.o.metrics?.laneJobs.set(
      { system: this.o.system, state: 'waiting' },
      this.waiting.size + this.waitingBackground.size,
    );
  }
}
