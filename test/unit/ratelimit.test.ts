// The shared rate-limit primitives on a fake clock: every wait is fake time moved by the test, nothing sleeps.
import { describe, expect, it } from 'vitest';
import { FakeClock, settle } from '../../harness/fake-clock.js';
import { Semaphore } from '../../src/ratelimit/semaphore.js';
import { TokenBucket } from '../../src/ratelimit/token-bucket.js';

describe('Semaphore', () => {
  it('refuses a max below 1', () => {
    expect(() => new Semaphore(0)).toThrow(/max must be >= 1/);
  });

  it('grants up to max at once, then hands each released slot to the longest waiter', async () => {
    const s = new Semaphore(2, new FakeClock());
    const r1 = await s.acquire();
    const r2 = await s.acquire();
    expect(s.inFlight).toBe(2);
    const order: number[] = [];
    const waiters = [3, 4, 5].map((n) =>
      s.acquire().then((release) => {
        order.push(n);
        return release;
      }),
    );
    await settle();
    expect([order, s.queued]).toEqual([[], 3]);
    r1();
    r1(); // a second release of the same slot is a no-op
    await settle();
    expect([order, s.inFlight, s.queued]).toEqual([[3], 2, 2]);
    r2();
    // Each release hands the slot to the next waiter in line.
    for (const waiter of waiters) (await waiter)();
    expect(order).toEqual([3, 4, 5]);
    expect([s.inFlight, s.queued]).toEqual([0, 0]);
  });

  it('a released slot never goes to a newcomer while someone waits', async () => {
    const s = new Semaphore(1, new FakeClock());
    const first = await s.acquire();
    const granted: string[] = [];
    const granting = (who: string) => (release: () => void) => {
      granted.push(who);
      return release;
    };
    const waiting = s.acquire().then(granting('waiter'));
    first();
    // The slot is already the waiter's, even before its continuation runs.
    const late = s.acquire().then(granting('newcomer'));
    (await waiting)();
    (await late)();
    expect(granted).toEqual(['waiter', 'newcomer']);
  });

  it('acquireWithin gives up after waitMs and leaves the queue; a free slot is taken whatever waitMs says', async () => {
    const clock = new FakeClock();
    const s = new Semaphore(1, clock);
    const held = await s.acquireWithin(0);
    expect(held).toBeTypeOf('function');
    let answer: unknown = 'pending';
    void s.acquireWithin(100).then((r) => {
      answer = r;
    });
    const patient = s.acquire();
    await clock.advance(99);
    expect([answer, s.queued]).toEqual(['pending', 2]);
    await clock.advance(1);
    expect([answer, s.queued]).toEqual([undefined, 1]);
    held?.();
    (await patient)();
    expect([s.inFlight, clock.pendingTimers()]).toEqual([0, 0]);
  });

  it('a grant before the deadline cancels the timeout', async () => {
    const clock = new FakeClock();
    const s = new Semaphore(1, clock);
    const held = await s.acquire();
    const within = s.acquireWithin(1_000);
    await clock.advance(10);
    held();
    const release = await within;
    expect(release).toBeTypeOf('function');
    expect(clock.pendingTimers()).toBe(0);
    await clock.advance(5_000);
    expect(s.inFlight).toBe(1);
    release?.();
    expect(s.inFlight).toBe(0);
  });

  it('run() holds a slot for the call and frees it when the call fails', async () => {
    const s = new Semaphore(2, new FakeClock());
    let running = 0;
    let peak = 0;
    const gates = Array.from({ length: 5 }, () => Promise.withResolvers<void>());
    const runs = gates.map((g, i) =>
      s.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await g.promise;
        running--;
        if (i === 1) throw new Error('boom');
        return i;
      }),
    );
    const settled = Promise.allSettled(runs);
    for (const g of gates) {
      await settle();
      expect(running).toBeLessThanOrEqual(2);
      g.resolve();
    }
    const results = await settled;
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect([peak, s.inFlight, s.queued]).toEqual([2, 0, 0]);
  });
});

describe('TokenBucket', () => {
  it('refuses a rate of 0 and a burst below 1', () => {
    expect(() => new TokenBucket(0, 1)).toThrow(/rate must be > 0/);
    expect(() => new TokenBucket(1, 0)).toThrow(/burst >= 1/);
  });

  it('reservations: the burst goes at once, then one token per 1/rate, refilled up to the burst', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(4, 2, clock);
    expect([bucket.reserve(), bucket.reserve()]).toEqual([0, 0]);
    expect(bucket.reserve()).toBe(250);
    expect(bucket.reserve()).toBe(500);
    await clock.advance(1_000); // 4 tokens refilled, 2 of them owed
    expect(bucket.reserve()).toBe(0);
    await clock.advance(60_000); // refill stops at the burst
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 250]);
  });

  it('take() waits until the reserved token is due, in reservation order', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(10, 1, clock);
    const done: [number, number][] = [];
    const takes = [0, 1, 2].map((n) => bucket.take().then(() => done.push([n, clock.now()])));
    await settle();
    expect(done).toEqual([[0, 0]]);
    await clock.advance(99);
    expect(done).toHaveLength(1);
    await clock.advance(101);
    await Promise.all(takes);
    expect(done).toEqual([
      [0, 0],
      [1, 100],
      [2, 200],
    ]);
  });

  it('take() rounds a fractional wait up to whole milliseconds', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(3, 1, clock);
    await bucket.take();
    let due = false;
    void bucket.take().then(() => {
      due = true;
    });
    await clock.advance(333);
    expect(due).toBe(false);
    await clock.advance(1);
    expect(due).toBe(true);
  });
});
