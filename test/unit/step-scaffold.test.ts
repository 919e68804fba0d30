// The scaffolding every step shares: the write helper, the one place a failure becomes an outcome, and the
// converged cache (fake clock, no sleeps).
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../harness/fake-clock.js';
import { defaultConfig } from '../../src/config/config.js';
import type { WorkspaceStatus } from '../../src/reconcile/status.js';
import {
  ConvergedCache,
  recordedAsConverged,
  settle,
  spreadVerifiedAt,
  stepWriter,
  verifiedTtlMs,
} from '../../src/reconcile/steps/scaffold.js';
import { type PlannedChange, type StepContext, StepError } from '../../src/reconcile/types.js';
import { workspaceNames } from '../../src/spec/names.js';
import type { WorkspaceSpec } from '../../src/spec/workspace.js';

const cfg = defaultConfig();
const change = (target: string): PlannedChange => ({ system: 'iam', action: 'update', target });

function ctx(over: Partial<StepContext> = {}): StepContext {
  return {
    cfg,
    log: pino({ level: 'silent' }),
    workspaceId: 'ws1',
    names: workspaceNames(cfg, 'ws1'),
    dryRun: false,
    force: false,
    changes: [],
    outputs: {},
    source: 'ns/cm',
    spec: {} as WorkspaceSpec,
    specHash: 's1',
    specUnchanged: false,
    ...over,
  };
}

describe('stepWriter', () => {
  it('records the change, makes the call and counts one write per call', async () => {
    const c = ctx();
    const w = stepWriter(c);
    let calls = 0;
    await w.write(change('a'), async () => {
      calls++;
    });
    await w.write(change('b'), async () => {
      calls++;
    });
    expect(calls).toBe(2);
    expect(w.writes).toBe(2);
    expect(c.changes.map((x) => x.target)).toEqual(['a', 'b']);
  });

  it('counts what a call says it wrote: two for apply + patch, none for "already gone"', async () => {
    const w = stepWriter(ctx());
    await w.write(change('apply+patch'), async () => 2);
    await w.write(change('gone'), async () => 0);
    expect(w.writes).toBe(2);
  });

  it('in a dry run records the change, skips the call, and makes the dry-run call when there is one', async () => {
    const c = ctx({ dryRun: true });
    const w = stepWriter(c);
    const made: string[] = [];
    await w.write(change('a'), async () => {
      made.push('real');
    });
    await w.write(
      change('b'),
      async () => {
        made.push('real');
      },
      { dryRun: async () => made.push('server dry run') },
    );
    expect(made).toEqual(['server dry run']);
    expect(w.writes).toBe(0);
    expect(c.changes.map((x) => x.target)).toEqual(['a', 'b']);
  });

  it('reports drift repair only for writes with a drift kind, and only when the spec did not change', async () => {
    const drifted: string[] = [];
    const unchanged = stepWriter(ctx({ specUnchanged: true }), (k) => drifted.push(k));
    await unchanged.write(change('a'), async () => undefined, { drift: 'tags' });
    await unchanged.write(change('b'), async () => undefined); // a create: no drift kind
    await unchanged.write(change('c'), async () => 0, { drift: 'gone' });
    const changed = stepWriter(ctx({ specUnchanged: false }), (k) => drifted.push(k));
    await changed.write(change('d'), async () => undefined, { drift: 'tags' });
    const dry = stepWriter(ctx({ specUnchanged: true, dryRun: true }), (k) => drifted.push(k));
    await dry.write(change('e'), async () => undefined, { drift: 'tags' });
    expect(drifted).toEqual(['tags', 'gone']);
  });

  it('a failed call is recorded, not counted, and propagates', async () => {
    const c = ctx();
    const w = stepWriter(c);
    await expect(
      w.write(change('a'), async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(w.writes).toBe(0);
    expect(c.changes).toHaveLength(1);
  });
});

describe('settle', () => {
  it('passes an outcome through', async () => {
    const w = stepWriter(ctx());
    const out = await settle(ctx(), 'iam', w, async () => ({
      state: 'Ready',
      reason: 'Synced',
      message: '',
      writes: 0,
    }));
    expect(out.state).toBe('Ready');
  });

  it('turns a raised StepError into its outcome, keeping the writes made before it', async () => {
    const c = ctx();
    const w = stepWriter(c);
    const out = await settle(c, 'iam', w, async () => {
      await w.write(change('a'), async () => undefined);
      throw new StepError('IamRejected', 'no', 'terminal', { code: 'MalformedPolicyDocument' });
    });
    expect(out).toEqual({
      state: 'Failed',
      reason: 'IamRejected',
      message: 'MalformedPolicyDocument: no',
      writes: 1,
      retryable: false,
    });
  });

  it('classifies the system error first; what stays unclassified is retried and logged', async () => {
    const logged: unknown[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => logged.push(JSON.parse(line)) });
    const c = ctx({ log });
    const w = stepWriter(c);
    const classified = await settle(
      c,
      'flyte',
      w,
      async () => {
        throw new Error('grpc says no');
      },
      (err) => new StepError('FlyteUnavailable', (err as Error).message, 'retryable'),
    );
    expect(classified).toMatchObject({ state: 'Failed', reason: 'FlyteUnavailable', retryable: true });
    expect(logged).toHaveLength(0);

    const unclassified = await settle(c, 'kubernetes', w, async () => {
      throw new Error('connection reset');
    });
    expect(unclassified).toMatchObject({ state: 'Failed', reason: 'Error', retryable: true });
    expect(logged).toMatchObject([{ step: 'kubernetes', msg: 'step failed unexpectedly' }]);
  });
});

const status = (state: 'Ready' | 'Failed', desiredHash?: string): WorkspaceStatus => ({
  phase: 'Ready',
  conditions: [],
  steps: {
    iam: {
      state,
      reason: 'Synced',
      message: 'in sync',
      lastTransitionTime: '2026-01-01T00:00:00Z',
      details: desiredHash ? { roleArn: 'arn:aws:iam::1:role/x', desiredHash } : { roleArn: 'arn:aws:iam::1:role/x' },
    },
  },
});

describe('ConvergedCache', () => {
  const TTL = 1_000;

  it('answers from the entry while the hash is the same and the entry is younger than the TTL', async () => {
    const clock = new FakeClock();
    const cache = new ConvergedCache<string>('iam', { now: () => clock.now() });
    expect(cache.lookup(ctx(), 'h1', TTL)).toBeUndefined();
    cache.verified('ws1', 'h1', 'arn-1');
    await clock.advance(TTL - 1);
    expect(cache.lookup(ctx(), 'h1', TTL)).toEqual({ value: 'arn-1', from: 'verified' });
    await clock.advance(1);
    expect(cache.lookup(ctx(), 'h1', TTL)).toBeUndefined();
    // The expired entry was dropped: even a longer TTL does not bring it back.
    expect(cache.lookup(ctx(), 'h1', 10 * TTL)).toBeUndefined();
  });

  it('a changed desired state, a rerun or a plan reads the system, and drops the entry', () => {
    const clock = new FakeClock();
    const cache = new ConvergedCache<string>('iam', { now: () => clock.now() });
    for (const [c, hash] of [
      [ctx(), 'h2'],
      [ctx({ force: true }), 'h1'],
      [ctx({ dryRun: true }), 'h1'],
    ] as const) {
      cache.verified('ws1', 'h1', 'arn-1');
      expect(cache.lookup(c, hash, TTL)).toBeUndefined();
      expect(cache.lookup(ctx(), 'h1', TTL)).toBeUndefined();
    }
  });

  it('keeps workspaces apart, and forgets one or all', () => {
    const cache = new ConvergedCache<string>('iam', { now: () => 0 });
    cache.verified('ws1', 'h', 'a');
    cache.verified('ws2', 'h', 'b');
    expect(cache.lookup(ctx({ workspaceId: 'ws2' }), 'h', TTL)?.value).toBe('b');
    cache.forget('ws2');
    expect(cache.lookup(ctx({ workspaceId: 'ws2' }), 'h', TTL)).toBeUndefined();
    expect(cache.lookup(ctx(), 'h', TTL)?.value).toBe('a');
    cache.forget();
    expect(cache.lookup(ctx(), 'h', TTL)).toBeUndefined();
  });

  it('after a restart trusts a status recording this desired state, re-read at a spread point within one TTL', async () => {
    const clock = new FakeClock();
    await clock.advance(50_000);
    const cache = new ConvergedCache<string>('iam', { now: () => clock.now(), random: () => 0.25 });
    const restarted = ctx({ previous: status('Ready', 'h1') });
    expect(cache.lookup(restarted, 'h1', TTL, 'arn-recorded')).toEqual({ value: 'arn-recorded', from: 'recorded' });
    // Verified "0.25 TTL ago": trusted for the remaining 0.75 TTL, then read again.
    await clock.advance(0.75 * TTL - 1);
    expect(cache.lookup(restarted, 'h1', TTL, 'arn-recorded')?.from).toBe('verified');
    await clock.advance(1);
    expect(cache.lookup(restarted, 'h1', TTL, 'arn-recorded')).toBeUndefined();
  });

  it('does not trust the status for another desired state, another step, without a value, with TTL 0, or once it has an entry', () => {
    const cache = new ConvergedCache<string>('iam', { now: () => 0, random: () => 0 });
    const restarted = ctx({ previous: status('Ready', 'h1') });
    expect(cache.lookup(restarted, 'h2', TTL, 'arn')).toBeUndefined();
    expect(new ConvergedCache<string>('flyte').lookup(restarted, 'h1', TTL, 'arn')).toBeUndefined();
    expect(cache.lookup(restarted, 'h1', TTL)).toBeUndefined();
    expect(cache.lookup(restarted, 'h1', 0, 'arn')).toBeUndefined();
    cache.verified('ws1', 'h0', 'arn-live');
    expect(cache.lookup(restarted, 'h1', TTL, 'arn')).toBeUndefined();
  });

  it('takes the TTL fixed or asked each time', () => {
    let asked = 0;
    expect(verifiedTtlMs(undefined, 5)).toBe(5);
    expect(verifiedTtlMs(7, 5)).toBe(7);
    expect(
      verifiedTtlMs(() => {
        asked++;
        return 9;
      }, 5),
    ).toBe(9);
    expect(asked).toBe(1);
  });
});

// What a restarted controller trusts from status, and where its next check falls.

describe('recordedAsConverged', () => {
  it('trusts a Ready record of exactly this desired state', () => {
    expect(recordedAsConverged(ctx({ previous: status('Ready', 'h1') }), 'iam', 'h1')).toBe(true);
  });

  it('reads again for another desired state, a failed or missing record, an old record without a hash, a rerun or a plan', () => {
    expect(recordedAsConverged(ctx({ previous: status('Ready', 'h1') }), 'iam', 'h2')).toBe(false);
    expect(recordedAsConverged(ctx({ previous: status('Failed', 'h1') }), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx({ previous: status('Ready') }), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx({ previous: status('Ready', 'h1') }), 'flyte', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx({ previous: status('Ready', 'h1'), force: true }), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx({ previous: status('Ready', 'h1'), dryRun: true }), 'iam', 'h1')).toBe(false);
  });
});

describe('spreadVerifiedAt', () => {
  it('places the next check uniformly within one interval from now', () => {
    expect(spreadVerifiedAt(10_000, 1_000, () => 0)).toBe(10_000); // next check a full interval away
    expect(spreadVerifiedAt(10_000, 1_000, () => 0.999)).toBeCloseTo(9_001); // next check almost now
    for (let i = 0; i < 100; i++) {
      const at = spreadVerifiedAt(10_000, 1_000);
      expect(at).toBeGreaterThan(9_000);
      expect(at).toBeLessThanOrEqual(10_000);
    }
  });
});
