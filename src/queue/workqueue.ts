// A keyed work queue with client-go workqueue semantics (util/workqueue: queue.go, delaying_queue.go,
// default_rate_limiters.go) on top of p-queue, which is only the worker pool: p-queue neither dedupes nor
// keeps one key from running twice at once, so the bookkeeping below does.
//
//   dirty      keys that need a (re)run. add() of a dirty key is a no-op (coalescing).
//   processing keys whose process() is running. A key added while processing is marked dirty and run once
//              more after the current run ends — never concurrently with itself.
//   queued     keys with a closure waiting in p-queue. Invariant: queued ⊆ dirty, queued ∩ processing = ∅,
//              so there is at most one pending closure per key.
//
// Priorities (controller-runtime's priority queue): keys waiting to run are taken highest priority first,
// FIFO within a priority. Periodic resyncs and the initial list add at Priority.Low, so a change someone
// just made is not queued behind thousands of keys that only need re-checking. Adding a waiting key at a
// higher priority raises it; a lower one never lowers it.
//
// Rate limiting = max(per-key exponential backoff, overall token bucket), like client-go's
// DefaultTypedControllerRateLimiter (5 ms…1000 s per item, 10 qps / burst 100 overall), with jitter added
// to the per-key part so keys that failed together do not retry together.
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { type Clock, systemClock, type Timer } from '../kinds/clock.js';
import type { Metrics } from '../metrics/metrics.js';
import { TokenBucket } from '../ratelimit/token-bucket.js';

/** controller-runtime's values: handler events at 0, the initial list and resyncs at LowPriority (-100). */
export const Priority = { Normal: 0, Low: -100 } as const;

/**
 * What a processing function returns: nothing (done), a request to run the key again later, or `waiting`:
 * the reconcile handed work to elsewhere (an external system's lane) that asks for the key again when done.
 * Waiting is not a success: the key's failure count stays, so retries through a sick system keep backing off.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: lets `async (key) => { … }` (Promise<void>) be a processor.
export type Result = { requeueAfterMs?: number; waiting?: boolean } | undefined | void;

export interface WorkQueueOptions {
  /** Queue name (the `name` label of the workqueue_* series). */
  name: string;
  /** Maximum keys processed at once (distinct keys only: one key never runs concurrently). */
  concurrency: number;
  /** First retry delay after a failure; doubles per consecutive failure of the key. */
  baseDelayMs: number;
  /** Cap of the per-key retry delay (before jitter). */
  maxDelayMs: number;
  /** Fraction of random extra delay added to per-key backoff: delay·(1 + jitter·rand). Default 0.1. */
  jitter?: number;
  /** Overall retry token bucket: refill rate per second (default 10) … */
  qps?: number;
  /** … and capacity (default 100). qps ≤ 0 disables the bucket. */
  burst?: number;
  metrics?: Metrics;
  log?: Logger;
  /**
   * Processes one key. Throwing → addRateLimited(key) (backoff retry); returning → forget(key) (backoff
   * reset), and addAfter(key, requeueAfterMs) when given.
   */
  process: (key: string) => Promise<Result>;
  /** How often unfinished-work/longest-running gauges are refreshed (client-go: 500 ms). Default 500. */
  metricsIntervalMs?: number;
  /** Time and timers (delays, backoff, token bucket, drain deadline, gauges). Default: the system clock. */
  clock?: Clock;
}

export interface ShutDownOptions {
  /** How long to wait for in-flight keys before giving up on them. Default 0 (don't wait). */
  drainTimeoutMs?: number;
}

interface DelayedAdd {
  at: number;
  timer: Timer;
}

export class WorkQueue {
  private readonly pq: PQueue;
  /** Keys that need a (re)run → the highest priority they were added with. */
  private readonly dirty = new Map<string, number>();
  private readonly processing = new Map<string, number>(); // key → start time (clock.now())
  private readonly queued = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly timers = new Map<string, DelayedAdd>();
  private readonly failures = new Map<string, number>();
  private readonly jitter: number;
  /** The overall retry bucket; undefined when qps ≤ 0 disables it. */
  private readonly bucket: TokenBucket | undefined;
  private shuttingDown = false;
  private paused = false;
  private metricsTimer: Timer | undefined;
  private readonly clock: Clock;
  private readonly labels: { name: string; controller: string } | undefined;
  private readonly idleWaiters = new Set<() => void>();

  constructor(private readonly opts: WorkQueueOptions) {
    if (!(opts.concurrency >= 1)) throw new Error(`WorkQueue ${opts.name}: concurrency must be ≥ 1`);
    this.pq = new PQueue({ concurrency: opts.concurrency });
    this.clock = opts.clock ?? systemClock;
    this.jitter = opts.jitter ?? 0.1;
    const qps = opts.qps ?? 10;
    this.bucket = qps > 0 ? new TokenBucket(qps, opts.burst ?? 100, this.clock) : undefined;
    const m = opts.metrics;
    if (m) {
      this.labels = { name: opts.name, controller: m.controller };
      m.workqueueDepth.set(this.labels, 0);
      m.workqueueAdds.inc(this.labels, 0);
      m.workqueueRetries.inc(this.labels, 0);
      m.workqueueUnfinishedWork.set(this.labels, 0);
      m.workqueueLongestRunning.set(this.labels, 0);
      m.activeWorkers.set({ controller: m.controller }, 0);
      const every = opts.metricsIntervalMs ?? 500;
      const tick = () => {
        this.updateUnfinishedWork();
        this.metricsTimer = this.clock.setTimer(tick, every);
        this.metricsTimer.unref();
      };
      this.metricsTimer = this.clock.setTimer(tick, every);
      this.metricsTimer.unref();
    }
  }

  /**
   * Marks `key` as needing processing. Coalesces with a pending run (raising its priority if this one is
   * higher); a running key runs once more after.
   */
  add(key: string, priority: number = Priority.Normal): void {
    if (this.shuttingDown) return;
    const pending = this.dirty.get(key);
    if (pending !== undefined) {
      if (priority <= pending) return;
      this.dirty.set(key, priority);
      if (this.queued.has(key)) this.pq.setPriority(key, priority);
      return;
    }
    this.dirty.set(key, priority);
    this.addedAt.set(key, this.clock.now());
    if (this.labels) this.opts.metrics?.workqueueAdds.inc(this.labels);
    if (this.processing.has(key)) return; // re-run by finish()
    this.enqueue(key, priority);
  }

  /** Adds `key` after `ms`. If a timer for the key is already pending, the earlier of the two wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const existing = this.timers.get(key);
    if (existing) {
      if (existing.at <= at) return;
      existing.timer.cancel();
    }
    const timer = this.clock.setTimer(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /**
   * Adds `key` after its rate-limited delay: max(min(base·2^failures, max)·(1 + jitter·rand), token bucket
   * wait), then counts one more failure for the key.
   */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.addAfter(key, this.when(key));
    if (this.labels) this.opts.metrics?.workqueueRetries.inc(this.labels);
  }

  /** Delay addRateLimited would use now (consumes a bucket token and counts a failure). */
  private when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const exp = Math.min(this.opts.baseDelayMs * 2 ** n, this.opts.maxDelayMs);
    const perItem = exp * (1 + this.jitter * Math.random());
    return Math.max(perItem, this.bucket?.reserve() ?? 0);
  }

  /** Resets the key's failure count (its next addRateLimited starts from baseDelayMs again). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Consecutive failures recorded for the key since its last forget(). */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Keys waiting to be processed (not running, not delayed) — client-go's Len(). */
  len(): number {
    return this.queued.size;
  }

  /** Keys currently being processed. */
  running(): string[] {
    return [...this.processing.keys()];
  }

  /** Keys waiting for a delayed add (addAfter / addRateLimited). */
  delayed(): string[] {
    return [...this.timers.keys()];
  }

  /**
   * True when nothing is queued or running and no delayed add is due within `withinMs` (default 1 s;
   * long periodic requeues don't count). Meant for tests and benchmarks.
   */
  idle(withinMs = 1000): boolean {
    if (this.queued.size > 0 || this.processing.size > 0 || this.dirty.size > 0) return false;
    const horizon = this.clock.now() + withinMs;
    for (const t of this.timers.values()) if (t.at <= horizon) return false;
    return true;
  }

  /** Stops starting new keys (leadership lost); running keys finish, adds still accumulate (deduped). */
  pause(): void {
    this.paused = true;
    this.pq.pause();
  }

  /** Starts processing again after pause(). */
  resume(): void {
    if (this.shuttingDown) return;
    this.paused = false;
    this.pq.start();
  }

  isPaused(): boolean {
    return this.paused;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Stops taking keys: further adds are ignored, pending timers are cancelled and keys that have not
   * started are dropped. Waits up to `drainTimeoutMs` for running keys to finish. Returns the abandoned
   * keys: those that never started, those still running at the deadline, and those that were re-added
   * while running (they would have run again). Delayed (timer) keys are dropped and not listed.
   */
  async shutDown(opts: ShutDownOptions = {}): Promise<string[]> {
    if (this.shuttingDown) return [];
    this.shuttingDown = true;
    for (const t of this.timers.values()) t.timer.cancel();
    this.timers.clear();
    const abandoned = new Set<string>(this.queued);
    this.pq.clear();
    this.queued.clear();
    this.setDepth();
    const drainMs = opts.drainTimeoutMs ?? 0;
    if (this.processing.size > 0 && drainMs > 0) {
      let timer: Timer | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.add(resolve)),
        new Promise<void>((resolve) => {
          timer = this.clock.setTimer(resolve, drainMs);
        }),
      ]);
      timer?.cancel();
    }
    for (const k of this.processing.keys()) abandoned.add(k);
    for (const k of this.dirty.keys()) abandoned.add(k);
    this.dirty.clear();
    this.metricsTimer?.cancel();
    this.updateUnfinishedWork();
    return [...abandoned];
  }

  private enqueue(key: string, priority: number): void {
    this.queued.add(key);
    this.setDepth();
    this.pq
      .add(() => this.run(key), { priority, id: key })
      .catch(() => {
        // AbortError from pq.clear() during shutDown; run() itself never rejects.
      });
  }

  private async run(key: string): Promise<void> {
    this.queued.delete(key);
    this.dirty.delete(key);
    const start = this.clock.now();
    this.processing.set(key, start);
    this.setDepth();
    const m = this.opts.metrics;
    if (m && this.labels) {
      const added = this.addedAt.get(key);
      if (added !== undefined) m.workqueueQueueDuration.observe(this.labels, (start - added) / 1000);
      m.activeWorkers.set({ controller: m.controller }, this.processing.size);
    }
    this.addedAt.delete(key);
    try {
      const result = await this.opts.process(key);
      if (!result?.waiting) this.forget(key);
      const after = result?.requeueAfterMs;
      if (after !== undefined && after >= 0) this.addAfter(key, after);
    } catch (err) {
      this.opts.log?.debug(
        { err, key, queue: this.opts.name, failures: this.numRequeues(key) + 1 },
        'requeue after error',
      );
      this.addRateLimited(key);
    } finally {
      this.finish(key, start);
    }
  }

  private finish(key: string, start: number): void {
    this.processing.delete(key);
    const m = this.opts.metrics;
    if (m && this.labels) {
      m.workqueueWorkDuration.observe(this.labels, (this.clock.now() - start) / 1000);
      m.activeWorkers.set({ controller: m.controller }, this.processing.size);
      // The timer refreshes these while work runs; refresh now too, so an idle queue never reports
      // the last item's age for up to one timer period.
      this.updateUnfinishedWork();
    }
    if (this.shuttingDown) {
      if (this.processing.size === 0) {
        for (const resolve of this.idleWaiters) resolve();
        this.idleWaiters.clear();
      }
      return;
    }
    const again = this.dirty.get(key);
    if (again !== undefined) this.enqueue(key, again);
  }

  private setDepth(): void {
    if (this.labels) this.opts.metrics?.workqueueDepth.set(this.labels, this.queued.size);
  }

  /** Refreshes workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds. */
  updateUnfinishedWork(): void {
    const m = this.opts.metrics;
    if (!m || !this.labels) return;
    const now = this.clock.now();
    let total = 0;
    let longest = 0;
    for (const start of this.processing.values()) {
      const s = (now - start) / 1000;
      total += s;
      if (s > longest) longest = s;
    }
    m.workqueueUnfinishedWork.set(this.labels, total);
    m.workqueueLongestRunning.set(this.labels, longest);
  }
}
