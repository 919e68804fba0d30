// Retry classification and budget logic of the FlyteAdmin client, without a network: an interceptor
// answers every call, so the retry loop, limiter and error mapping are exercised in isolation.
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../harness/fake-clock.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import {
  backoffDelayMs,
  createFlyteAdminClient,
  type FlyteAdminClientOptions,
  isRetryableCode,
  RETRYABLE_CODES,
  toFlyteError,
} from '../../src/adapters/flyteadmin.js';
import { defaultConfig } from '../../src/config/config.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { StepError } from '../../src/kinds/step.js';

const log = pino({ level: 'silent' });
const ALL_CODES = Object.values(Code).filter((c): c is Code => typeof c === 'number');

/** A client whose every RPC is answered by `answer` (attempt number, method name). */
function fakeClient(
  answer: (attempt: number, method: string) => unknown,
  flyte: Record<string, unknown> = {},
  options: Pick<FlyteAdminClientOptions, 'clock' | 'backoff' | 'random'> = {},
) {
  let attempts = 0;
  const interceptor: Interceptor = () => async (req) => {
    attempts++;
    const result = await answer(attempts, req.method.name);
    if (result instanceof Error) throw result;
    return {
      stream: false,
      service: req.service,
      method: req.method,
      header: new Headers(),
      trailer: new Headers(),
      message: result,
    } as never;
  };
  const cfg = { ...defaultConfig().flyte, endpoint: 'http://127.0.0.1:9', maxAttempts: 4, ...flyte };
  const stats = new CallStats('flyte');
  const api = createFlyteAdminClient(cfg, {
    stats,
    log,
    interceptors: [interceptor],
    backoff: { baseMs: 1, maxMs: 2 },
    fallbackDomains: ['development'],
    ...options,
  });
  return { api, stats, attempts: () => attempts };
}

describe('retry classification', () => {
  it('retries exactly UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED', () => {
    expect([...RETRYABLE_CODES].sort()).toEqual(
      [Code.ResourceExhausted, Code.Unavailable, Code.DeadlineExceeded].sort(),
    );
    for (const code of ALL_CODES) {
      expect(isRetryableCode(code), Code[code]).toBe(
        code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.ResourceExhausted,
      );
    }
  });

  // Unimplemented is a fallback, not an error, for GetDomains (tested below).
  it.each(ALL_CODES.filter((c) => c !== Code.Unimplemented))(
    'code %s: attempts = maxAttempts iff retryable',
    async (code) => {
      const { api, stats, attempts } = fakeClient(() => new ConnectError('boom', code));
      await expect(api.getDomains()).rejects.toMatchObject({ code });
      api.close();
      expect(attempts()).toBe(isRetryableCode(code) ? 4 : 1);
      expect(stats.snapshot().reads).toBe(attempts());
    },
  );

  it('succeeds after transient failures and counts each attempt as a read', async () => {
    const { api, stats, attempts } = fakeClient((n) =>
      n < 3 ? new ConnectError('busy', Code.ResourceExhausted) : { domains: [{ id: 'staging', name: 'staging' }] },
    );
    expect(await api.getDomains()).toEqual(['staging']);
    expect(attempts()).toBe(3);
    expect(stats.snapshot()).toMatchObject({ reads: 3, writes: 0, byOperation: { GetDomains: 3 } });
    api.close();
  });

  it('writes are counted as writes', async () => {
    const { api, stats } = fakeClient(() => ({}));
    await api.updateProjectDomainAttributes('p', 'd', { target: { case: undefined } } as never);
    await api.updateProject({ id: 'p', name: 'n' });
    expect(stats.snapshot()).toMatchObject({ reads: 0, writes: 2 });
    api.close();
  });

  it('refuses an empty or invalid project id itself: nothing is sent, nothing is counted', async () => {
    const { api, stats, attempts } = fakeClient(() => ({}));
    const wec = { target: { case: 'workflowExecutionConfig', value: {} } } as never;
    const calls: [string, () => Promise<unknown>][] = [];
    for (const id of ['', 'Upper', 'under_score', '-lead', 'a'.repeat(64), 'ws.1']) {
      calls.push(
        [`getProject(${id})`, () => api.getProject(id)],
        [`registerProject(${id})`, () => api.registerProject({ id, name: 'n' })],
        [`updateProject(${id})`, () => api.updateProject({ id, name: 'n' })],
        [`getPDA(${id})`, () => api.getProjectDomainAttributes(id, 'staging', MatchableResource.CLUSTER_RESOURCE)],
        [`updatePDA(${id})`, () => api.updateProjectDomainAttributes(id, 'staging', wec)],
      );
    }
    calls.push(
      ['updatePDA(empty domain)', () => api.updateProjectDomainAttributes('ok', '', wec)],
      ['listProjects(limit 0)', () => api.listProjects({ limit: 0 })],
    );
    for (const [what, call] of calls) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code, what).toBe(Code.InvalidArgument);
      expect(err?.rawMessage, what).toMatch(/refusing to send/);
    }
    expect(attempts()).toBe(0);
    expect(stats.snapshot()).toMatchObject({ reads: 0, writes: 0 });
    await api.getProject('a'.repeat(63));
    expect(attempts()).toBe(1);
    api.close();
  });

  it('NotFound is "missing", Unimplemented falls back (GetProject → ListProjects, GetDomains → configured)', async () => {
    const { api } = fakeClient((_, method) => {
      if (method === 'GetProject' || method === 'GetDomains') return new ConnectError('nope', Code.Unimplemented);
      if (method === 'ListProjects') return { projects: [{ id: 'p', name: 'n' }], token: '' };
      return new ConnectError('missing', Code.NotFound);
    });
    expect((await api.getProject('p'))?.name).toBe('n');
    expect(await api.getProject('q')).toBeUndefined();
    expect(await api.getDomains()).toEqual(['development']);
    expect(await api.getProjectDomainAttributes('p', 'd', MatchableResource.CLUSTER_RESOURCE)).toBeUndefined();
    api.close();
  });

  it('an exhausted budget stops retrying: no wait that would end past the budget', async () => {
    const clock = new FakeClock();
    const { api, attempts } = fakeClient(
      () => new ConnectError('down', Code.Unavailable),
      { maxAttempts: 100 },
      { clock, backoff: { baseMs: 100, maxMs: 400 }, random: () => 1 },
    );
    const outcome = api
      .withBudget(1000)
      .getDomains()
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    await clock.advance(1000);
    expect((await outcome)?.code).toBe(Code.Unavailable);
    // Attempts at 0, 100, 300 and 700 ms; the next wait (400 ms) would end past the 1 s budget.
    expect(attempts()).toBe(4);
    expect(clock.pendingTimers()).toBe(0);
    api.close();
  });
});

describe('backoff', () => {
  it('equal jitter within an exponential ceiling', () => {
    expect(backoffDelayMs(1, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelayMs(1, 100, 1000, () => 1)).toBe(100);
    expect(backoffDelayMs(3, 100, 1000, () => 0.5)).toBe(300);
    expect(backoffDelayMs(10, 100, 1000, () => 1)).toBe(1000);
  });
});

describe('call slots', () => {
  it('holds a call beyond maxConcurrentCalls until a slot frees, and fails it once its budget is spent waiting', async () => {
    const gate = Promise.withResolvers<void>();
    const clock = new FakeClock();
    const { api, attempts } = fakeClient(
      async () => {
        await gate.promise;
        return { domains: [{ id: 'staging', name: 'staging' }] };
      },
      { maxConcurrentCalls: 1 },
      { clock },
    );
    const holder = api.getDomains();
    const patient = api.getDomains();
    const impatient = api
      .withBudget(20)
      .getDomains()
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    await clock.advance(20);
    const err = await impatient;
    expect(err?.code).toBe(Code.DeadlineExceeded);
    expect(err?.rawMessage).toMatch(/waiting for one of 1 FlyteAdmin call slots/);
    expect(attempts()).toBe(1); // only the holder reached the server
    gate.resolve();
    expect(await Promise.all([holder, patient])).toEqual([['staging'], ['staging']]);
    expect(attempts()).toBe(2);
    api.close();
  });
});

describe('StepError mapping', () => {
  it.each([
    [Code.Unavailable, 'FlyteUnavailable', 'retryable', 'UNAVAILABLE'],
    [Code.DeadlineExceeded, 'FlyteUnavailable', 'retryable', 'DEADLINE_EXCEEDED'],
    [Code.ResourceExhausted, 'FlyteUnavailable', 'retryable', 'RESOURCE_EXHAUSTED'],
    [Code.Aborted, 'FlyteUnavailable', 'retryable', 'ABORTED'],
    [Code.Internal, 'FlyteUnavailable', 'retryable', 'INTERNAL'],
    [Code.Unknown, 'FlyteUnavailable', 'retryable', 'UNKNOWN'],
    [Code.Canceled, 'FlyteUnavailable', 'retryable', 'CANCELED'],
    [Code.InvalidArgument, 'FlyteInvalidArgument', 'terminal', 'INVALID_ARGUMENT'],
    [Code.AlreadyExists, 'FlyteAlreadyExists', 'retryable', 'ALREADY_EXISTS'],
    [Code.NotFound, 'FlyteNotFound', 'retryable', 'NOT_FOUND'],
    [Code.Unauthenticated, 'FlyteUnauthenticated', 'retryable', 'UNAUTHENTICATED'],
    [Code.PermissionDenied, 'FlytePermissionDenied', 'terminal', 'PERMISSION_DENIED'],
    [Code.Unimplemented, 'FlyteUnsupported', 'terminal', 'UNIMPLEMENTED'],
    [Code.FailedPrecondition, 'FlyteError', 'terminal', 'FAILED_PRECONDITION'],
  ] as const)('%s → %s (%s)', (code, reason, errorClass, name) => {
    const e = toFlyteError(new ConnectError('x', code));
    expect(e).toBeInstanceOf(StepError);
    expect(e).toMatchObject({ reason, errorClass, retryable: errorClass === 'retryable', code: name });
  });

  it('keeps StepErrors and wraps anything else as retryable', () => {
    const se = new StepError('FlyteProjectConflict', 'x', 'conflict');
    expect(toFlyteError(se)).toBe(se);
    expect(toFlyteError(new Error('weird'))).toMatchObject({ reason: 'FlyteError', errorClass: 'retryable' });
  });
});
