// The outcome label of flyte_workspace_external_requests_total: gRPC code names for FlyteAdmin (gRPC),
// HTTP statuses for Kubernetes (HTTP), so a NotFound from FlyteAdmin never reads as an HTTP status.
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { CallStats, grpcOutcome, isSuccessOutcome } from '../../src/adapters/call-stats.js';
import { Metrics } from '../../src/metrics/metrics.js';

async function outcomes(system: 'flyte' | 'kubernetes', results: (() => Promise<unknown>)[]): Promise<string[]> {
  const metrics = new Metrics();
  const stats = new CallStats(system, metrics);
  for (const r of results) await stats.track('Op', false, r).catch(() => undefined);
  const got = await metrics.externalRequests.get();
  return got.values.map((v) => String(v.labels.outcome)).sort();
}

describe('external request outcome labels', () => {
  it('gRPC calls are labelled with lower-case gRPC code names, success as ok', async () => {
    const fail = (code: Code) => () => Promise.reject(new ConnectError('x', code));
    expect(
      await outcomes('flyte', [
        () => Promise.resolve(),
        fail(Code.NotFound),
        fail(Code.AlreadyExists),
        fail(Code.Unavailable),
        fail(Code.DeadlineExceeded),
        fail(Code.Canceled),
        () => Promise.reject(new Error('not a gRPC error')),
      ]),
    ).toEqual(['already_exists', 'cancelled', 'deadline_exceeded', 'not_found', 'ok', 'unavailable', 'unknown']);
  });

  it('every gRPC code has a distinct snake_case name', () => {
    const codes = Object.values(Code).filter((c): c is Code => typeof c === 'number');
    const names = codes.map((c) => grpcOutcome(new ConnectError('x', c)));
    expect(new Set(names).size).toBe(codes.length);
    for (const n of names) expect(n).toMatch(/^[a-z]+(_[a-z]+)*$/);
  });

  it('HTTP calls keep http_<status>, success as success', async () => {
    const status = (code: number) => () => Promise.reject(Object.assign(new Error('x'), { code }));
    expect(await outcomes('kubernetes', [() => Promise.resolve(), status(404), status(409)])).toEqual([
      'http_404',
      'http_409',
      'success',
    ]);
    expect(['ok', 'success'].map(isSuccessOutcome)).toEqual([true, true]);
    expect(['http_200', 'not_found', undefined].map(isSuccessOutcome)).toEqual([false, false, false]);
  });
});
