import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, flushLogger, REDACTED, reconcileLogger } from '../../src/log.js';

function capture(level = 'info') {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const log = createLogger({ level, destination });
  const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, lines, records };
}

describe('createLogger', () => {
  it('writes JSON lines with an ISO time, the level as a label and the service', () => {
    const { log, records } = capture();
    log.info({ a: 1 }, 'hello');
    log.debug('hidden at info');
    const [r] = records();
    expect(records()).toHaveLength(1);
    expect(r).toMatchObject({ level: 'info', service: 'flyte-workspace-controller', a: 1, msg: 'hello' });
    expect(r?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('redacts credentials at the top level and nested, and leaves other fields alone', () => {
    const { log, lines, records } = capture();
    log.info(
      {
        token: 'tok-0',
        auth: { accessToken: 'tok-1', clientSecret: 'cs-1', type: 'client-credentials' },
        aws: { credentials: { secretAccessKey: 'sk-2', accessKeyId: 'AKIDEXAMPLE', sessionToken: 'st-2' } },
        user: { name: 'alice', password: 'pw-1' },
        headers: { authorization: 'Bearer abc', 'x-api-key': 'key-0', accept: 'application/json' },
        req: { headers: { authorization: 'Bearer def' } },
        flyte: { secret: 's-1' },
      },
      'request',
    );
    const text = lines.join('\n');
    for (const secret of [
      'tok-0',
      'tok-1',
      'cs-1',
      'sk-2',
      'st-2',
      'pw-1',
      'Bearer abc',
      'Bearer def',
      'key-0',
      's-1',
    ]) {
      expect(text).not.toContain(secret);
    }
    const [r] = records() as [Record<string, Record<string, unknown>>];
    expect(r.token).toBe(REDACTED);
    expect(r.auth).toEqual({ accessToken: REDACTED, clientSecret: REDACTED, type: 'client-credentials' });
    expect(r.aws?.credentials).toEqual({
      secretAccessKey: REDACTED,
      accessKeyId: 'AKIDEXAMPLE',
      sessionToken: REDACTED,
    });
    expect(r.user).toEqual({ name: 'alice', password: REDACTED });
    expect(r.headers).toEqual({ authorization: REDACTED, 'x-api-key': REDACTED, accept: 'application/json' });
    expect(r.req).toEqual({ headers: { authorization: REDACTED } });
  });

  it('redacts inside child loggers too', () => {
    const { log, lines } = capture();
    log.child({ component: 'flyte' }).warn({ cfg: { clientSecret: 'cs-9' } }, 'x');
    expect(lines.join('')).not.toContain('cs-9');
    expect(lines.join('')).toContain(REDACTED);
  });

  it('serialises errors under err', () => {
    const { log, records } = capture();
    log.error({ err: new Error('boom') }, 'failed');
    const [r] = records() as [Record<string, Record<string, unknown>>];
    expect(r.err).toMatchObject({ type: 'Error', message: 'boom' });
    expect(String(r.err?.stack)).toContain('boom');
  });
});

describe('reconcileLogger', () => {
  it('binds controller, namespace, name, workspace and a reconcileID on every line', () => {
    const { log, records } = capture();
    const rl = reconcileLogger(log, {
      controller: 'workspace',
      namespace: 'workspace-platform',
      name: 'ml-research',
      workspace: 'ml-research',
    });
    rl.info('step one');
    rl.info({ step: 'iam' }, 'step two');
    const [a, b] = records();
    for (const r of [a, b]) {
      expect(r).toMatchObject({
        controller: 'workspace',
        namespace: 'workspace-platform',
        name: 'ml-research',
        workspace: 'ml-research',
        service: 'flyte-workspace-controller',
      });
      expect(r?.reconcileID).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(a?.reconcileID).toBe(b?.reconcileID);
    const other = reconcileLogger(log, { controller: 'workspace', namespace: 'n', name: 'x', reconcileID: 'fixed' });
    other.info('again');
    expect(records()[2]).toMatchObject({ reconcileID: 'fixed' });
    expect(records()[2]).not.toHaveProperty('workspace');
  });

  it('flushLogger resolves', async () => {
    const { log } = capture();
    log.info('x');
    await expect(flushLogger(log)).resolves.toBeUndefined();
  });
});
