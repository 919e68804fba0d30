// Token sources of the FlyteAdmin client: client-credentials cache (expiry, early refresh, single flight,
// failure handling) with a fake clock and token endpoint, and the bearer file re-read on rotation.
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  ClientCredentialsTokenSource,
  FileTokenSource,
  type TokenPost,
  type TokenResponse,
} from '../../src/adapters/flyteadmin.js';

const dir = mkdtempSync(join(tmpdir(), 'fwc-token-'));
const secretFile = join(dir, 'secret');

function replace(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

interface FakeEndpoint {
  post: TokenPost;
  calls: { headers: Record<string, string>; body: URLSearchParams }[];
  next: (() => Promise<{ status: number; body: TokenResponse }>) | undefined;
}

/** A token endpoint issuing tok-1, tok-2, …; expiresIn 0 = no expires_in in the answer. */
function endpoint(expiresIn = 3600): FakeEndpoint {
  let n = 0;
  const ep: FakeEndpoint = {
    calls: [],
    next: undefined,
    post: async (_url, headers, body) => {
      ep.calls.push({ headers, body: new URLSearchParams(body) });
      if (ep.next) return ep.next();
      n++;
      return { status: 200, body: { access_token: `tok-${n}`, ...(expiresIn ? { expires_in: expiresIn } : {}) } };
    },
  };
  return ep;
}

let now = 0;
const clock = () => now;
const log = pino({ level: 'silent' });

function source(ep: FakeEndpoint, extra: Partial<ConstructorParameters<typeof ClientCredentialsTokenSource>[0]> = {}) {
  return new ClientCredentialsTokenSource({
    tokenUrl: 'https://auth.example/oauth2/token',
    clientId: 'fwc client',
    clientSecretFile: secretFile,
    scopes: ['all', 'offline'],
    log,
    now: clock,
    httpPost: ep.post,
    ...extra,
  });
}

beforeEach(() => {
  now = 1_000_000;
  replace(secretFile, 's3cr:t\n');
});

describe('client credentials token cache', () => {
  it('posts grant_type, scopes and HTTP Basic credentials (url-encoded, secret from the file)', async () => {
    const ep = endpoint();
    expect(await source(ep).token()).toBe('tok-1');
    const [call] = ep.calls;
    expect(call?.body.get('grant_type')).toBe('client_credentials');
    expect(call?.body.get('scope')).toBe('all offline');
    expect(call?.body.has('client_secret')).toBe(false);
    const basic = Buffer.from((call?.headers.authorization ?? '').replace('Basic ', ''), 'base64').toString();
    expect(basic).toBe('fwc%20client:s3cr%3At');
  });

  it('caches until 60 s before expiry, then refreshes', async () => {
    const ep = endpoint(3600);
    const src = source(ep);
    expect(await src.token()).toBe('tok-1');
    now += 3_539_000; // 61 s left
    expect(await src.token()).toBe('tok-1');
    now += 1_000; // 60 s left: refresh
    expect(await src.token()).toBe('tok-2');
    expect(ep.calls).toHaveLength(2);
  });

  it('short-lived tokens refresh at half their lifetime, not on every call', async () => {
    const ep = endpoint(60);
    const src = source(ep);
    await src.token();
    now += 29_000;
    expect(await src.token()).toBe('tok-1');
    now += 1_000;
    expect(await src.token()).toBe('tok-2');
  });

  it('no expires_in: assumes a conservative default lifetime', async () => {
    const ep = endpoint(0);
    const src = source(ep, { defaultLifetimeMs: 120_000 });
    await src.token();
    now += 59_000;
    expect(await src.token()).toBe('tok-1');
    now += 1_000;
    expect(await src.token()).toBe('tok-2');
  });

  it('single flight: concurrent callers share one request', async () => {
    const ep = endpoint();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    ep.next = async () => {
      await gate;
      return { status: 200, body: { access_token: 'shared', expires_in: 3600 } };
    };
    const src = source(ep);
    const all = Promise.all(Array.from({ length: 10 }, () => src.token()));
    release();
    expect(await all).toEqual(Array(10).fill('shared'));
    expect(ep.calls).toHaveLength(1);
  });

  it('a failed refresh keeps using a token that has not expired; an expired one fails', async () => {
    const ep = endpoint(3600);
    const src = source(ep);
    await src.token();
    now += 3_550_000; // inside the refresh window, still valid
    ep.next = async () => ({ status: 503, body: {} });
    expect(await src.token()).toBe('tok-1');
    now += 60_000; // expired
    await expect(src.token()).rejects.toMatchObject({ code: Code.Unavailable });
  });

  it('rejected credentials: Unauthenticated, after trying client_secret_post once', async () => {
    const ep = endpoint();
    ep.next = async () => ({ status: 401, body: { error: 'invalid_client' } });
    await expect(source(ep).token()).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(ep.calls).toHaveLength(2);
    expect(ep.calls[1]?.body.get('client_secret')).toBe('s3cr:t');
    expect(ep.calls[1]?.headers.authorization).toBeUndefined();
  });

  it('invalidate() forces a new token; the secret file is re-read for it', async () => {
    const ep = endpoint();
    const src = source(ep);
    await src.token();
    replace(secretFile, 'rotated');
    src.invalidate();
    expect(await src.token()).toBe('tok-2');
    const basic = Buffer.from((ep.calls[1]?.headers.authorization ?? '').replace('Basic ', ''), 'base64').toString();
    expect(basic.endsWith(':rotated')).toBe(true);
  });
});

describe('bearer token file', () => {
  it('reads, trims, re-reads after rotation, and fails on a missing or empty file', async () => {
    const file = join(dir, 'token');
    replace(file, 'first\n');
    const src = new FileTokenSource(file);
    expect(await src.token()).toBe('first');
    replace(file, 'second'); // new inode, as a projected volume update
    expect(await src.token()).toBe('second');
    replace(file, '  \n');
    await expect(src.token()).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(new FileTokenSource(join(dir, 'missing')).token()).rejects.toMatchObject({
      code: Code.Unauthenticated,
    });
  });
});
