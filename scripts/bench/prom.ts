// Prometheus text scraping for the benchmark: one sample map per scrape, and label-filtered sums/deltas.

import { isSuccessOutcome } from '../../src/adapters/call-stats.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class Scrape {
  constructor(
    readonly samples: Sample[],
    readonly at: number,
  ) {}

  /** Sum of every sample of `name` whose labels include `match`. */
  sum(name: string, match: Record<string, string> = {}): number {
    let total = 0;
    for (const s of this.samples) {
      if (s.name !== name) continue;
      if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
    return total;
  }

  /** Samples of `name`, for breakdowns by label. */
  all(name: string): Sample[] {
    return this.samples.filter((s) => s.name === name);
  }
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseProm(text: string, at = performance.now()): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) for (const l of m[3].matchAll(LABEL)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
    samples.push({ name: m[1] as string, labels, value: Number(m[4]) });
  }
  return new Scrape(samples, at);
}

export async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parseProm(await res.text());
}

export type SystemName = 'kubernetes' | 'iam' | 'flyte';
export const SYSTEMS: SystemName[] = ['kubernetes', 'iam', 'flyte'];

export interface RequestCounts {
  reads: number;
  writes: number;
  errors: number;
  byOperation: Record<string, number>;
}

/** External requests between two scrapes, per system. */
export function requestDelta(before: Scrape, after: Scrape): Record<SystemName, RequestCounts> {
  const out = {} as Record<SystemName, RequestCounts>;
  for (const system of SYSTEMS) out[system] = { reads: 0, writes: 0, errors: 0, byOperation: {} };
  const key = (s: Sample) => JSON.stringify(s.labels);
  const prior = new Map(before.all('flyte_workspace_external_requests_total').map((s) => [key(s), s.value]));
  for (const s of after.all('flyte_workspace_external_requests_total')) {
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
export function reconcileDelta(before: Scrape, after: Scrape): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of after.all('controller_runtime_reconcile_total')) {
    const d = s.value - before.sum('controller_runtime_reconcile_total', s.labels);
    if (d !== 0) out[s.labels.result as string] = d;
  }
  return out;
}
