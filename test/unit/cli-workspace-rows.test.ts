import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/adapters/kubernetes.js';
import { rerunHandled, rerunPatch } from '../../src/cli/rerun.js';
import {
  formatDuration,
  formatTable,
  humanAge,
  isReady,
  parseDuration,
  rowJson,
  WorkspaceTable,
  workspaceRow,
} from '../../src/cli/workspace-rows.js';
import { RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../../src/config/config.js';
import type { Condition, WorkspaceStatus } from '../../src/reconcile/status.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function cm(name: string, status?: WorkspaceStatus | string, annotations: Record<string, string> = {}): KubeObject {
  const all = { ...annotations };
  if (status !== undefined) all[STATUS_ANNOTATION] = typeof status === 'string' ? status : JSON.stringify(status);
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'workspace-platform', annotations: all } };
}

const ready: WorkspaceStatus = {
  phase: 'Ready',
  workspaceId: 'ml-research',
  conditions: [
    {
      type: 'Ready',
      status: 'True',
      reason: 'Provisioned',
      message: 'workspace provisioned',
      lastTransitionTime: '2026-01-01T11:55:00Z',
    },
  ],
  steps: {
    kubernetes: { state: 'Ready', reason: 'Synced', message: 'in sync', lastTransitionTime: '2026-01-01T11:55:00Z' },
    iam: { state: 'Ready', reason: 'Synced', message: 'in sync', lastTransitionTime: '2026-01-01T11:55:00Z' },
  },
  namespaces: ['flyte-ml-research'],
  roleArn: 'arn:aws:iam::123456789012:role/FlyteWorkspace-ml-research-Role',
  flyteProject: 'ml-research',
};

const iamFailing: WorkspaceStatus = {
  phase: 'Failed',
  workspaceId: 'fraud',
  conditions: [
    {
      type: 'Ready',
      status: 'False',
      reason: 'AccessDenied',
      message: 'iam: AccessDenied: not allowed',
      lastTransitionTime: '2026-01-01T09:00:00Z',
    },
  ],
  steps: {
    kubernetes: { state: 'Ready', reason: 'Synced', message: 'in sync', lastTransitionTime: '2026-01-01T09:00:00Z' },
    iam: {
      state: 'Failed',
      reason: 'AccessDenied',
      message: 'not allowed',
      lastTransitionTime: '2026-01-01T09:00:00Z',
    },
  },
  lastError:
    'iam: AccessDenied: User: arn:aws:sts::123456789012:assumed-role/controller is not authorized to perform iam:CreateRole on resource FlyteWorkspace-fraud-Role',
};

const invalid: WorkspaceStatus = {
  phase: 'Invalid',
  conditions: [
    {
      type: 'Ready',
      status: 'False',
      reason: 'InvalidSpec',
      message: 'invalid workspace.json: users[0].email: not an email address',
      lastTransitionTime: '2026-01-01T11:59:30Z',
    },
  ],
  steps: {},
  invalidFields: [{ field: 'users[0].email', message: 'not an email address' }],
  lastError: 'invalid workspace.json: users[0].email: not an email address',
};

describe('workspaceRow', () => {
  it('reads phase, Ready and its time, and the wide details from a Ready status', () => {
    const row = workspaceRow(cm('ml-research', ready));
    expect(row).toMatchObject({
      namespace: 'workspace-platform',
      name: 'ml-research',
      workspaceId: 'ml-research',
      phase: 'Ready',
      ready: 'True',
      readySince: '2026-01-01T11:55:00Z',
      reason: 'Provisioned',
      message: 'workspace provisioned',
      namespaces: ['flyte-ml-research'],
      flyteProject: 'ml-research',
    });
    expect(row.failingStep).toBeUndefined();
    expect(isReady(row)).toBe(true);
  });

  it('names the failing step and its reason, and carries the last error', () => {
    const row = workspaceRow(cm('fraud', iamFailing));
    expect(row).toMatchObject({ phase: 'Failed', ready: 'False', failingStep: 'iam', reason: 'AccessDenied' });
    expect(row.message).toBe(iamFailing.lastError);
    expect(isReady(row)).toBe(false);
  });

  it('reports an invalid document as the spec step', () => {
    const row = workspaceRow(cm('broken', invalid));
    expect(row).toMatchObject({ phase: 'Invalid', failingStep: 'spec', reason: 'InvalidSpec' });
  });

  it('a claim conflict (no step ran) is the claim step', () => {
    const conflict: WorkspaceStatus = {
      phase: 'Conflict',
      workspaceId: 'dup',
      steps: {},
      lastError: 'workspace_id "dup" is already claimed by ConfigMap workspace-platform/dup',
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'WorkspaceClaimConflict',
          message: 'claimed',
          lastTransitionTime: '2026-01-01T11:00:00Z',
        },
      ],
    };
    expect(workspaceRow(cm('dup2', conflict))).toMatchObject({
      failingStep: 'claim',
      reason: 'WorkspaceClaimConflict',
    });
  });

  it('a workspace on its way to Ready does not show the error it had before', () => {
    const provisioning: WorkspaceStatus = {
      ...invalid,
      phase: 'Provisioning',
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'Provisioning',
          message: 'provisioning started',
          lastTransitionTime: '2026-01-01T11:59:30Z',
        },
      ],
    };
    const row = workspaceRow(cm('broken', provisioning));
    expect(row).toMatchObject({ phase: 'Provisioning', reason: 'Provisioning', message: 'provisioning started' });
    expect(row.failingStep).toBeUndefined();
  });

  it('a ConfigMap without a status, or with a garbled one, is Unknown and not Ready', () => {
    const none = workspaceRow(cm('new'));
    expect(none).toMatchObject({ phase: 'Unknown', ready: 'Unknown', reason: 'NotReconciled' });
    const garbled = workspaceRow(cm('odd', '{not json'));
    expect(garbled).toMatchObject({ phase: 'Unknown', ready: 'Unknown', reason: 'StatusUnreadable' });
    expect(isReady(none) || isReady(garbled)).toBe(false);
  });

  it('JSON output keeps the full status under a source reference', () => {
    const json = rowJson(workspaceRow(cm('fraud', iamFailing)));
    expect(json.source).toEqual({ namespace: 'workspace-platform', name: 'fraud' });
    expect((json.status as WorkspaceStatus).steps.iam?.reason).toBe('AccessDenied');
  });
});

describe('formatTable', () => {
  const rows = [workspaceRow(cm('ml-research', ready)), workspaceRow(cm('fraud', iamFailing))];

  it('prints the flux-style columns with Ready age', () => {
    const [header, first, second] = formatTable(rows, { width: 0, now: NOW });
    expect(header?.split(/\s{3,}/)).toEqual([
      'SOURCE',
      'WORKSPACE',
      'PHASE',
      'READY',
      'AGE',
      'STEP',
      'REASON',
      'MESSAGE',
    ]);
    expect(first?.split(/\s{3,}/)).toEqual([
      'workspace-platform/ml-research',
      'ml-research',
      'Ready',
      'True',
      '5m',
      '-',
      'Provisioned',
      'workspace provisioned',
    ]);
    expect(second).toContain('   3h   ');
    expect(second?.endsWith(iamFailing.lastError as string)).toBe(true);
    // Columns line up: every cell starts where its header does.
    expect((first?.indexOf('   ml-research') ?? 0) + 3).toBe(header?.indexOf('WORKSPACE'));
    expect(first?.indexOf('Provisioned')).toBe(header?.indexOf('REASON'));
  });

  it('with --watch the phase column has room for a later Provisioning row', () => {
    const table = new WorkspaceTable({ width: 0, now: NOW, roomForChanges: true }, rows);
    const provisioning = workspaceRow(
      cm('ml-research', {
        ...ready,
        phase: 'Provisioning',
        conditions: [{ ...(ready.conditions[0] as Condition), status: 'False' }],
      }),
    );
    expect(table.line(provisioning).indexOf('False')).toBe(table.header().indexOf('READY'));
  });

  it('cuts the message so each line fits the terminal width', () => {
    const lines = formatTable(rows, { width: 120, now: NOW });
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(120);
    expect(lines[2]?.endsWith('…')).toBe(true);
  });

  it('wide adds namespaces, role, project and rerun state, and never cuts', () => {
    const withRerun = workspaceRow(
      cm('ml-research', { ...ready, lastHandledReconcileAt: 't1' }, { [RECONCILE_REQUEST_ANNOTATION]: 't2' }),
    );
    const [header, line, failing] = formatTable([withRerun, rows[1] as (typeof rows)[0]], {
      width: 80,
      now: NOW,
      wide: true,
    });
    expect(header).toMatch(/NAMESPACES\s+ROLE\s+PROJECT\s+RERUN\s+MESSAGE$/);
    expect(line).toContain('flyte-ml-research');
    expect(line).toContain('FlyteWorkspace-ml-research-Role');
    expect(line).toMatch(/\bpending\b/);
    expect(failing?.endsWith(iamFailing.lastError as string)).toBe(true);
  });
});

describe('durations', () => {
  it('ages read like kubectl', () => {
    const s = 1000;
    expect(
      [0, 45 * s, 150 * s, 42 * 60 * s, 5 * 3600 * s + 7 * 60 * s, 20 * 3600 * s, 76 * 3600 * s].map(humanAge),
    ).toEqual(['0s', '45s', '2m30s', '42m', '5h7m', '20h', '3d4h']);
    expect(humanAge(-5000)).toBe('<invalid>');
  });

  it('--timeout takes Go durations and rejects anything else', () => {
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1h')).toBe(3_600_000);
    for (const bad of ['', '5', 'five minutes', '5m junk', '0s', '-5m'])
      expect(parseDuration(bad), bad).toBeUndefined();
    expect(formatDuration(300_000)).toBe('5m0s');
    expect(formatDuration(3_600_000)).toBe('1h0m0s');
    expect(formatDuration(30_000)).toBe('30s');
  });
});

describe('rerun request', () => {
  it('patches exactly the one annotation', () => {
    expect(rerunPatch('2026-01-01T12:00:00.000Z')).toEqual({
      metadata: { annotations: { [RECONCILE_REQUEST_ANNOTATION]: '2026-01-01T12:00:00.000Z' } },
    });
  });

  it('is answered when the status echoes the token, or a later request that replaced it', () => {
    const at = (handled: string | undefined, requested: string) =>
      cm(
        'w',
        { ...ready, ...(handled ? { lastHandledReconcileAt: handled } : {}) },
        {
          [RECONCILE_REQUEST_ANNOTATION]: requested,
        },
      );
    expect(rerunHandled(at(undefined, 'mine'), 'mine')).toBe(false);
    expect(rerunHandled(at('older', 'mine'), 'mine')).toBe(false);
    expect(rerunHandled(at('mine', 'mine'), 'mine')).toBe(true);
    expect(rerunHandled(at('older', 'later'), 'mine')).toBe(false);
    expect(rerunHandled(at('later', 'later'), 'mine')).toBe(true);
  });
});
