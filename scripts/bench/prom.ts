// What the benchmark reads from two scrapes of the controller's /metrics: external requests and reconciles
// between them, per system and per result.
import type { Sample, Samples } from '../../harness/metrics-text.js';
import { isSuccessOutcome } from '../../src/adapters/call-stats.js';
import type { SystemName } from '../../src/kinds/step.js';
export const SYSTEMS: SystemName[] = ['kubernetes', 'iam', 'flyte'];

export interface RequestCounts {
  reads: number;
  writes: number;
  errors: number;
  byOperation: Record<string, number>;
}

/** External requests between two scrapes, per system. */
export function requestDelta(before: Samples, after: Samples): Record<SystemName, RequestCounts> {
  const out = {} as Record<SystemName, RequestCounts>;
  for (const system of SYSTEMS) out[system] = { reads: 0, writes: 0, errors: 0, byOperation: {} };
  const key = (s: Sample) => JSON.stringify(s.labels);
  const prior = new Map(before.find('flyte_workspace_external_requests_total').map((s) => [key(s), s.value]));
  for (const s of after.find('flyte_workspace_external_requests_total')) {
    const d = s.value - (prior.get(key(s)) ?? 0);
    if (d === 0) continue;
    const c = out[s.labels.system as SystemName];
    if (!c) continue;
    if (s.labels.access === 'write') c.writes += d;
    else c.reads += d;
    const ok = isSuccessOutcome(s.labels.outcome);
    if (!ok) c.errors += d;
    const op = `${s.labels.operation}${ok ? '' : `(${s.labels.outcome})`}`;
    c.byOperation[op] = (c.byOperation[op] ?? 0) + d;
  }
  return out;
}

/** Reconciles between two scrapes, by result. */
export function reconcileDelta(before: Samples, after: Samples): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of after.find('controller_runtime_reconcile_total')) {
    const d = s.value - before.sum('controller_runtime_reconcile_total', s.labels);
    if (d !== 0) out[s.labels.result as string] = d;
  }
  return out;
}
