import { describe, expect, it } from 'vitest';
import { FakeClock, settle } from '../../harness/fake-clock.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { Priority, type Result, WorkQueue, type WorkQueueOptions } from '../../src/queue/workqueue.js';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

// Time is fake: it moves only by clock.advance(), which fires due timers in order. Nothing here sleeps.
let clock = new FakeClock();

/** Lets queued work run (no time passes) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await settle(1);
  if (!cond()) throw new Error('condition not met after the queue settled');
}

function queue(process: WorkQueueOptions['process'], extra: Partial<WorkQueueOptions> = {}): WorkQueue {
  clock = new FakeClock();
  return new WorkQueue({
    name: 'test',
    concurrency: 4,
    baseDelayMs: 20,
    maxDelayMs: 1000,
    jitter: 0,
    process,
    clock,
    ...extra,
  });
}

async function metricValue(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  const values = data.values.filter((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return values.reduce((s, v) => s + v.value, 0);
}

describe('WorkQueue', () => {
  it('runs waiting keys highest priority first, FIFO within a priority; a Normal add raises a Low key', async () => {
    const order: string[] = [];
    const q = queue(
      async (key) => {
        order.push(key);
      },
      { concurrency: 1 },
    );
    q.pause(); // everything waits, as during the initial list
    for (let i = 0; i < 5; i++) q.add(`resync-${i}`, Priority.Low);
    q.add('change-a');
    q.add('resync-3'); // an event for a key that was only waiting for its resync
    q.add('change-b', Priority.Normal);
    q.add('change-a', Priority.Low); // a lower priority never lowers a waiting key
    q.resume();
    await until(() => order.length === 7);
    expect(order).toEqual(['change-a', 'resync-3', 'change-b', 'resync-0', 'resync-1', 'resync-2', 'resync-4']);
    await q.shutDown();
  });

  it('a key re-added while running runs again with the highest priority it was re-added with', async () => {
    const order: string[] = [];
    const release = deferred();
    const started = deferred();
    const q = queue(
      async (key) => {
        order.push(key);
        if (order.length === 1) {
          started.resolve();
          await release.promise;
        }
      },
      { concurrency: 1 },
    );
    q.add('a', Priority.Low);
    await started.promise;
    for (let i = 0; i < 3; i++) q.add(`low-${i}`, Priority.Low);
    q.add('a', Priority.Low);
    q.add('a'); // a change arrived while a ran: its rerun goes before the waiting Low keys
    release.resolve();
    await until(() => order.length === 5);
    expect(order).toEqual(['a', 'a', 'low-0', 'low-1', 'low-2']);
    await q.shutDown();
  });

  it('coalesces adds: 10 adds + adds during processing → exactly 2 runs, never concurrent', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const firstStarted = deferred();
    const release = deferred();
    const q = queue(async () => {
      runs++;
      running++;
      maxRunning = Math.max(maxRunning, running);
      if (runs === 1) {
        firstStarted.resolve();
        await release.promise;
      } else {
        await clock.sleep(5);
      }
      running--;
    });
    for (let i = 0; i < 10; i++) q.add('ns/a');
    await firstStarted.promise;
    // While running: more adds mark it dirty once; no second concurrent run.
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/a');
    expect(q.len()).toBe(0);
    expect(q.running()).toEqual(['ns/a']);
    await clock.advance(20);
    expect(runs).toBe(1);
    release.resolve();
    await clock.advance(5);
    expect(q.idle()).toBe(true);
    await clock.advance(30);
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
    await q.shutDown();
  });

  it('runs different keys concurrently up to the concurrency limit', async () => {
    let running = 0;
    let maxRunning = 0;
    const release = deferred();
    const seen: string[] = [];
    const q = queue(
      async (key) => {
        seen.push(key);
        running++;
        maxRunning = Math.max(maxRunning, running);
        await release.promise;
        running--;
      },
      { concurrency: 3 },
    );
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await until(() => running === 3);
    await clock.advance(20);
    expect(running).toBe(3);
    expect(q.len()).toBe(2);
    release.resolve();
    await until(() => q.idle());
    expect(maxRunning).toBe(3);
    expect(seen.sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    await q.shutDown();
  });

  it('backs off exponentially on failures and resets on success', async () => {
    const times: number[] = [];
    let failUntil = 4;
    const q = queue(async () => {
      times.push(clock.now());
      if (times.length <= failUntil) throw new Error('boom');
    });
    q.add('k');
    await clock.advance(1000);
    expect(times.length).toBe(5);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    expect(gaps).toEqual([20, 40, 80, 160]); // base 20 ms, doubling, no jitter
    expect(q.numRequeues('k')).toBe(0); // success → forget
    // After the reset, the next failure starts again from the base delay.
    failUntil = 6;
    const before = times.length;
    q.add('k');
    await clock.advance(1000);
    expect(times.length).toBe(before + 2);
    // Without the reset it would be 20·2^4 = 320 ms.
    expect((times[before + 1] as number) - (times[before] as number)).toBe(20);
    await q.shutDown();
  });

  it('caps per-key backoff at maxDelayMs and applies jitter within bounds', () => {
    const q = queue(async () => {}, { baseDelayMs: 100, maxDelayMs: 1000, jitter: 0.5, qps: 0 });
    const when = (key: string) => (q as unknown as { when(k: string): number }).when(key);
    const delays = Array.from({ length: 8 }, () => when('x'));
    expect(delays[0]).toBeGreaterThanOrEqual(100);
    expect(delays[0]).toBeLessThanOrEqual(150);
    expect(delays[3]).toBeGreaterThanOrEqual(800);
    for (const d of delays.slice(4)) {
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(1500);
    }
    expect(q.numRequeues('x')).toBe(8);
    q.forget('x');
    expect(q.numRequeues('x')).toBe(0);
    void q.shutDown();
  });

  it('token bucket limits the overall retry rate once the burst is spent', () => {
    const q = queue(async () => {}, { baseDelayMs: 1, maxDelayMs: 1, qps: 10, burst: 3 });
    const when = (key: string) => (q as unknown as { when(k: string): number }).when(key);
    const d = ['a', 'b', 'c', 'd', 'e'].map(when);
    expect(d.slice(0, 3).every((x) => x <= 1)).toBe(true);
    expect(d[3]).toBe(100); // 1 token / (10/s)
    expect(d[4]).toBe(200);
    void q.shutDown();
  });

  it('addAfter: the earliest pending time wins', async () => {
    const runs: number[] = [];
    const q = queue(async () => {
      runs.push(clock.now());
    });
    q.addAfter('k', 300);
    q.addAfter('k', 30); // earlier replaces
    q.addAfter('k', 500); // later is ignored
    expect(q.delayed()).toEqual(['k']);
    await clock.advance(29);
    expect(runs).toEqual([]);
    await clock.advance(1);
    expect(runs).toEqual([30]);
    await clock.advance(1000);
    expect(runs).toEqual([30]);
    await q.shutDown();
  });

  it('requeueAfterMs from process schedules another run; a thrown error retries', async () => {
    let n = 0;
    const q = queue(async (): Promise<Result> => {
      n++;
      if (n === 1) return { requeueAfterMs: 10 };
      if (n === 2) throw new Error('once');
    });
    q.add('k');
    await clock.advance(9);
    expect(n).toBe(1);
    await clock.advance(1); // requeueAfterMs 10
    expect(n).toBe(2);
    await clock.advance(20); // the error: base delay 20
    expect(n).toBe(3);
    await clock.advance(1000);
    expect(n).toBe(3);
    expect(q.numRequeues('k')).toBe(0);
    await q.shutDown();
  });

  it('shutDown drains in-flight work within the deadline and returns abandoned keys', async () => {
    const release = deferred();
    const done: string[] = [];
    const q = queue(
      async (key) => {
        if (key === 'slow') await release.promise;
        else await clock.sleep(10);
        done.push(key);
      },
      { concurrency: 2 },
    );
    q.add('fast');
    q.add('slow');
    q.add('queued');
    q.addAfter('later', 10_000);
    await until(() => q.running().length === 2);
    q.add('fast'); // dirty while running → would run again
    const shutDown = q.shutDown({ drainTimeoutMs: 200 });
    await clock.advance(199);
    expect(done).toEqual(['fast']);
    await clock.advance(1);
    const abandoned = await shutDown;
    expect(done).toEqual(['fast']);
    expect(abandoned.sort()).toEqual(['fast', 'queued', 'slow']);
    expect(q.delayed()).toEqual([]);
    q.add('after-shutdown');
    expect(q.len()).toBe(0);
    release.resolve();
    await settle();
    expect(done).toEqual(['fast', 'slow']);
  });

  it('shutDown returns nothing abandoned when in-flight work finishes in time', async () => {
    const q = queue(async () => {
      await clock.sleep(30);
    });
    q.add('a');
    await until(() => q.running().length === 1);
    const shutDown = q.shutDown({ drainTimeoutMs: 2000 });
    await clock.advance(30);
    expect(await shutDown).toEqual([]);
    expect(clock.pendingTimers()).toBe(0); // the drain deadline was cancelled
  });

  it('pause stops starting keys (adds still dedupe) and resume continues', async () => {
    let runs = 0;
    const q = queue(async () => {
      runs++;
    });
    q.pause();
    q.add('a');
    q.add('a');
    q.add('b');
    await clock.advance(30);
    expect(runs).toBe(0);
    expect(q.len()).toBe(2);
    q.resume();
    await until(() => q.idle());
    expect(runs).toBe(2);
    await q.shutDown();
  });

  it('updates workqueue_* metrics and active workers', async () => {
    const m = new Metrics('workspace', { defaultMetrics: false });
    const labels = { name: 'test', controller: 'workspace' };
    const release = deferred();
    const started = deferred();
    let failCalls = 0;
    const q = queue(
      async (key) => {
        if (key === 'fail' && ++failCalls < 3) throw new Error('x');
        if (key === 'slow') {
          started.resolve();
          await release.promise;
        }
      },
      { metrics: m, concurrency: 1, metricsIntervalMs: 10 },
    );
    q.add('slow');
    await started.promise;
    q.add('a');
    q.add('b');
    q.add('a');
    expect(await metricValue(m, 'workqueue_depth', labels)).toBe(2);
    expect(await metricValue(m, 'workqueue_adds_total', labels)).toBe(3);
    expect(await metricValue(m, 'controller_runtime_active_workers', { controller: 'workspace' })).toBe(1);
    await clock.advance(60); // the gauges refresh every 10 ms while 'slow' runs
    expect(await metricValue(m, 'workqueue_longest_running_processor_seconds', labels)).toBeCloseTo(0.06, 9);
    expect(await metricValue(m, 'workqueue_unfinished_work_seconds', labels)).toBeCloseTo(0.06, 9);
    release.resolve();
    await until(() => q.idle());
    q.add('fail');
    await clock.advance(20 + 40);
    expect(failCalls).toBe(3);
    expect(q.idle()).toBe(true);
    expect(await metricValue(m, 'workqueue_retries_total', labels)).toBe(2);
    expect(await metricValue(m, 'workqueue_depth', labels)).toBe(0);
    expect(await metricValue(m, 'controller_runtime_active_workers', { controller: 'workspace' })).toBe(0);
    await clock.advance(30);
    expect(await metricValue(m, 'workqueue_longest_running_processor_seconds', labels)).toBe(0);
    const text = await m.render();
    expect(text).toMatch(/workqueue_queue_duration_seconds_count\{name="test",controller="workspace"\} 6/);
    expect(text).toMatch(/workqueue_work_duration_seconds_count\{name="test",controller="workspace"\} 6/);
    await q.shutDown();
  });
});
