import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../harness/fake-clock.js';
import { SystemLane } from '../../src/reconcile/lanes.js';
import type { StepOutcome } from '../../src/reconcile/types.js';

const ready = (reason = 'UpToDate'): StepOutcome => ({ state: 'Ready', reason, message: 'ok', writes: 0 });

/** A job the test settles by hand. */
function gate() {
  let release!: (o: StepOutcome) => void;
  let fail!: (e: unknown) => void;
  const promise = new Promise<StepOutcome>((res, rej) => {
    release = res;
    fail = rej;
  });
  let started = 0;
  return {
    run: () => {
      started++;
      return promise;
    },
    release,
    fail,
    started: () => started,
  };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

function lane(capacity = 1) {
  const settled: string[] = [];
  const clock = new FakeClock();
  const l = new SystemLane({
    system: 'flyte',
    capacity,
    clock,
    onSettled: (k, _token, outcome) => {
      settled.push(k);
      return outcome.reason !== 'Unchanged'; // the caller's say: only news is kept
    },
  });
  return { l, settled, clock };
}

describe('SystemLane', () => {
  it('answers inline when the step settles without I/O, leaving nothing behind', async () => {
    const { l, settled } = lane();
    const a = await l.request('ns/a', 't1', async () => ready());
    expect(a).toEqual({ kind: 'settled', outcome: ready() });
    expect(l.counts()).toEqual({ running: 0, waiting: 0 });
    expect(settled).toEqual([]);
  });

  it('runs a slow step on in the lane, asks for the key again when it settles, and hands the outcome over once', async () => {
    const { l, settled } = lane();
    const g = gate();
    expect((await l.request('ns/a', 't1', g.run)).kind).toBe('running');
    expect((await l.request('ns/a', 't1', g.run)).kind).toBe('running');
    expect(g.started()).toBe(1); // one call per workspace per system
    g.release(ready('Applied'));
    await flush();
    expect(settled).toEqual(['ns/a']);
    expect(await l.request('ns/a', 't1', g.run)).toEqual({ kind: 'settled', outcome: ready('Applied') });
    // Taken once: the next request runs the step again (a cache answers, or a drift check runs).
    expect(await l.request('ns/a', 't1', async () => ready('Again'))).toEqual({
      kind: 'settled',
      outcome: ready('Again'),
    });
  });

  it('queues other keys beyond its capacity (Waiting with their place), and starts them as slots free up', async () => {
    const { l } = lane(1);
    const a = gate();
    const b = gate();
    const c = gate();
    expect((await l.request('a', 't', a.run)).kind).toBe('running');
    expect(await l.request('b', 't', b.run)).toEqual({ kind: 'waiting', ahead: 0 });
    expect(await l.request('c', 't', c.run)).toEqual({ kind: 'waiting', ahead: 1 });
    expect(l.counts()).toEqual({ running: 1, waiting: 2 });
    a.release(ready());
    await flush();
    expect(b.started()).toBe(1);
    expect(c.started()).toBe(0);
    b.release(ready());
    await flush();
    expect(c.started()).toBe(1);
  });

  it('a newer desired state for a running key waits for the running job, and the stale outcome is discarded', async () => {
    const { l, settled } = lane(2);
    const old = gate();
    const next = gate();
    await l.request('a', 'old', old.run);
    expect((await l.request('a', 'new', next.run)).kind).toBe('running');
    expect(next.started()).toBe(0);
    old.release(ready('Old'));
    await flush();
    expect(next.started()).toBe(1); // started as soon as the old one ended
    expect(settled).toEqual(['a']);
    expect((await l.request('a', 'new', next.run)).kind).toBe('running'); // the old outcome is not handed out
    next.release(ready('New'));
    await flush();
    expect(await l.request('a', 'new', next.run)).toEqual({ kind: 'settled', outcome: ready('New') });
  });

  it('a job that throws settles as a retryable failure', async () => {
    const { l } = lane();
    const g = gate();
    await l.request('a', 't', g.run);
    g.fail(new Error('boom'));
    await flush();
    const a = await l.request('a', 't', g.run);
    expect(a).toMatchObject({ kind: 'settled', outcome: { state: 'Failed', message: 'boom', retryable: true } });
  });

  it('drops an outcome the caller says is no news, so the next request runs the step again', async () => {
    const { l, settled } = lane();
    const g = gate();
    await l.request('a', 't', g.run);
    g.release(ready('Unchanged'));
    await flush();
    expect(settled).toEqual(['a']);
    expect(await l.request('a', 't', async () => ready('Fresh'))).toEqual({ kind: 'settled', outcome: ready('Fresh') });
  });

  it('runs urgent jobs before background re-checks, and an urgent request lifts a queued background one', async () => {
    const { l } = lane(1);
    const a = gate();
    const bg = gate();
    const urgent = gate();
    const lifted = gate();
    await l.request('a', 't', a.run);
    await l.request('bg', 't', bg.run, { background: true });
    await l.request('lift', 't', lifted.run, { background: true });
    await l.request('urgent', 't', urgent.run);
    await l.request('lift', 't2', lifted.run); // now urgent: behind 'urgent', ahead of 'bg'
    a.release(ready());
    await flush();
    expect([urgent.started(), lifted.started(), bg.started()]).toEqual([1, 0, 0]);
    urgent.release(ready());
    await flush();
    expect([lifted.started(), bg.started()]).toEqual([1, 0]);
    lifted.release(ready());
    await flush();
    expect(bg.started()).toBe(1);
  });

  it('forget drops a waiting job; close drops the waiting ones and reports the running ones it left', async () => {
    const { l, settled, clock } = lane(1);
    const a = gate();
    const b = gate();
    const c = gate();
    await l.request('a', 't', a.run);
    await l.request('b', 't', b.run);
    await l.request('c', 't', c.run);
    l.forget('b');
    expect(l.counts()).toEqual({ running: 1, waiting: 1 });
    const closing = l.close(10);
    await clock.advance(10);
    expect(await closing).toEqual(['a']);
    a.release(ready());
    await flush();
    expect(settled).toEqual([]);
    expect(c.started()).toBe(0);
  });
});
