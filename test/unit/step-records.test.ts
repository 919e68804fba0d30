import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import type { WorkspaceStatus } from '../../src/reconcile/status.js';
import { recordedAsConverged, spreadVerifiedAt } from '../../src/reconcile/steps/scaffold.js';
import type { StepContext } from '../../src/reconcile/types.js';
import { workspaceNames } from '../../src/spec/names.js';
import type { WorkspaceSpec } from '../../src/spec/workspace.js';

const cfg = defaultConfig();

function ctx(previous: WorkspaceStatus | undefined, over: Partial<StepContext> = {}): StepContext {
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
    specUnchanged: true,
    previous,
    ...over,
  };
}

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

describe('recordedAsConverged', () => {
  it('trusts a Ready record of exactly this desired state', () => {
    expect(recordedAsConverged(ctx(status('Ready', 'h1')), 'iam', 'h1')).toBe(true);
  });

  it('reads again for another desired state, a failed or missing record, an old record without a hash, a rerun or a plan', () => {
    expect(recordedAsConverged(ctx(status('Ready', 'h1')), 'iam', 'h2')).toBe(false);
    expect(recordedAsConverged(ctx(status('Failed', 'h1')), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(status('Ready')), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(status('Ready', 'h1')), 'flyte', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(undefined), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(status('Ready', 'h1'), { force: true }), 'iam', 'h1')).toBe(false);
    expect(recordedAsConverged(ctx(status('Ready', 'h1'), { dryRun: true }), 'iam', 'h1')).toBe(false);
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
