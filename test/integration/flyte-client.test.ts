// The real gRPC client against the FlyteAdmin double: auth (rotating bearer file, OAuth2 client
// credentials against a loopback token endpoint) and the concurrency limit.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { FlyteStep } from '../../src/reconcile/steps/flyte.js';
import { client, flyteConfig, stepContext, uniqueId, workspaceSpec } from './flyte-helpers.js';

let double: FlyteAdminDouble;
const dir = mkdtempSync(join(tmpdir(), 'fwc-flyte-auth-'));

beforeAll(async () => {
  double = await FlyteAdminDouble.start();
});
afterAll(async () => {
  await double.close();
});
beforeEach(() => double.reset());

/** Atomically replaces a file (new inode), like a kubelet-updated projected volume. */
function writeAtomic(path: string, content: string): void {
  const tmp = `${path}.${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe('bearer token from a file', () => {
  it('sends the token, and picks up a rotated file without restart', async () => {
    const tokenFile = join(dir, 'token');
    writeAtomic(tokenFile, 'tok-1\n');
    double.setRequireBearer('tok-1');
    const cfg = flyteConfig(double, { auth: { type: 'bearer-file', tokenFile } });
    const api = client(cfg);
    try {
      const step = new FlyteStep(api);
      const id = uniqueId();
      expect((await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)))).state).toBe('Ready');

      writeAtomic(tokenFile, 'tok-2\n');
      double.setRequireBearer('tok-2');
      double.resetCounters();
      expect(await api.getProject(id)).toBeDefined();
      expect(double.calls().byMethod.GetProject).toBe(1); // re-read before sending: no rejected attempt
    } finally {
      api.close();
    }
  });

  it('without the token the double answers Unauthenticated', async () => {
    double.setRequireBearer('tok-1');
    const api = client(flyteConfig(double));
    try {
      expect(await codeOf(api.getProject('x'))).toBe(Code.Unauthenticated);
    } finally {
      api.close();
    }
  });
});

describe('OAuth2 client credentials', () => {
  let tokenServer: http.Server;
  let tokenUrl: string;
  const issued = new Set<string>();
  let requests = 0;
  let acceptBasic = true;
  const secretFile = join(dir, 'client-secret');

  beforeAll(async () => {
    tokenServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        requests++;
        const form = new URLSearchParams(body);
        const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
        const [id, secret] = basic
          ? Buffer.from(basic[1] as string, 'base64')
              .toString()
              .split(':')
              .map(decodeURIComponent)
          : [form.get('client_id'), form.get('client_secret')];
        const ok =
          req.method === 'POST' &&
          form.get('grant_type') === 'client_credentials' &&
          id === 'fwc' &&
          secret === 's3cr3t' &&
          (acceptBasic || !basic);
        if (!ok) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_client"}');
          return;
        }
        const token = `at-${randomBytes(6).toString('hex')}`;
        issued.add(token);
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(
            JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 3600, scope: form.get('scope') }),
          );
      });
    });
    await new Promise<void>((r) => tokenServer.listen(0, '127.0.0.1', () => r()));
    tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/oauth2/token`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => tokenServer.close(() => r()));
  });
  beforeEach(() => {
    issued.clear();
    requests = 0;
    acceptBasic = true;
    writeAtomic(secretFile, 's3cr3t\n');
  });

  const ccConfig = () =>
    flyteConfig(double, {
      auth: { type: 'client-credentials', tokenUrl, clientId: 'fwc', clientSecretFile: secretFile, scopes: ['all'] },
    });

  it('fetches one token for many calls and uses it', async () => {
    double.setRequireBearer((t) => issued.has(t));
    const cfg = ccConfig();
    const api = client(cfg);
    try {
      const step = new FlyteStep(api);
      const out = await step.ensure(stepContext(cfg, workspaceSpec(cfg, uniqueId())));
      expect(out.state).toBe('Ready');
      expect(double.calls().reads + double.calls().writes).toBeGreaterThan(5);
      expect(requests).toBe(1);
    } finally {
      api.close();
    }
  });

  it('a revoked token is replaced after one Unauthenticated answer', async () => {
    double.setRequireBearer((t) => issued.has(t));
    const api = client(ccConfig());
    try {
      await api.getDomains();
      issued.clear(); // server-side revocation
      expect(await api.getDomains()).toEqual(['development', 'staging', 'production']);
      expect(requests).toBe(2);
    } finally {
      api.close();
    }
  });

  it('falls back to client_secret_post when the endpoint refuses HTTP Basic', async () => {
    acceptBasic = false;
    double.setRequireBearer((t) => issued.has(t));
    const api = client(ccConfig());
    try {
      expect(await api.getDomains()).toHaveLength(3);
      await api.getDomains();
      expect(requests).toBe(2); // one refused Basic attempt, then body credentials; then cached
    } finally {
      api.close();
    }
  });

  it('a wrong secret surfaces as Unauthenticated, not retried', async () => {
    writeAtomic(secretFile, 'wrong');
    double.setRequireBearer((t) => issued.has(t));
    const stats = new CallStats('flyte');
    const api = client(ccConfig(), stats);
    try {
      expect(await codeOf(api.getDomains())).toBe(Code.Unauthenticated);
      expect(double.calls().reads).toBe(0);
    } finally {
      api.close();
    }
  });
});

describe('request budget', () => {
  it('never runs more than maxConcurrentCalls at once', async () => {
    const cfg = flyteConfig(double, { maxConcurrentCalls: 2 });
    const api = client(cfg);
    try {
      double.setLatency(40);
      const results = await Promise.all(Array.from({ length: 8 }, () => api.getDomains()));
      expect(results).toHaveLength(8);
      expect(double.maxConcurrentCalls()).toBe(2);
    } finally {
      api.close();
    }
  });

  it('a budget view fails fast once its time is spent, without affecting other views', async () => {
    const api = client(flyteConfig(double));
    try {
      double.setLatency(100);
      const tight = api.withBudget(150);
      await tight.getDomains();
      expect(await codeOf(tight.getDomains())).toBe(Code.DeadlineExceeded);
      expect(await codeOf(tight.getDomains())).toBe(Code.DeadlineExceeded);
      expect(await api.withBudget(1_000).getDomains()).toHaveLength(3);
    } finally {
      api.close();
    }
  });
});

describe('TLS', () => {
  it('talks gRPC over TLS to a server whose certificate is signed by the configured CA file', async () => {
    const cert = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    // Self-signed certificate for 127.0.0.1 (openssl is part of the test toolchain).
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=flyteadmin-double',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    const secure = await FlyteAdminDouble.start({
      tls: { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') },
    });
    const trusted = client(flyteConfig(secure, { insecure: false, caFile: cert }));
    const untrusted = client(flyteConfig(secure, { insecure: false, maxAttempts: 1 }));
    try {
      expect(secure.url.startsWith('https://')).toBe(true);
      expect(await trusted.getDomains()).toHaveLength(3);
      // Without the CA the handshake fails (connect reports a certificate error as INTERNAL: not retried).
      expect(await codeOf(untrusted.getDomains())).toBe(Code.Internal);
      expect(secure.calls().reads).toBe(1);
    } finally {
      trusted.close();
      untrusted.close();
      await secure.close();
    }
  });
});
