// The Kubernetes client (src/kube) against a small in-process HTTP server: how answers become objects or
// the one KubeStatusError, the paginated LIST, server-side apply, the WATCH stream's framing, aborts, and
// one transport per kubeconfig. The real apiserver is exercised by the integration tests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kinds/kubernetes.js';
import { KubeClient, type WatchEventType } from '../../src/kube/client.js';
import { LineSplitter } from '../../src/kube/line-splitter.js';
import { KubeStatusError } from '../../src/kube/status.js';
import { transportFor } from '../../src/kube/transport.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Handler = (req: Seen, res: ServerResponse) => void;

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

/** A server answering with `handler`; returns a client on a kubeconfig of its own (so its own transport). */
async function serve(handler: Handler): Promise<{ client: KubeClient; seen: Seen[]; server: Server; kc: KubeConfig }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      handler(s, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true },
    ],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return { client: KubeClient.forConfig(kc), seen, server, kc };
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function statusBody(code: number, reason: string, message: string, details?: unknown) {
  return { kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message, details };
}

describe('KubeClient', () => {
  it('turns a Status answer into KubeStatusError (code, reason, message, details) for every verb', async () => {
    const causes = [{ reason: 'FieldValueInvalid', field: 'spec.hard', message: 'must be a quantity' }];
    const { client, seen } = await serve((_req, res) =>
      json(
        res,
        422,
        statusBody(422, 'Invalid', 'ResourceQuota "q" is invalid', { name: 'q', kind: 'resourcequotas', causes }),
      ),
    );
    const path = '/api/v1/namespaces/ns/resourcequotas/q';
    for (const call of [
      () => client.get(path),
      () => client.update(path, {}),
      () => client.apply(path, {}, { fieldManager: 'm' }),
      () => client.list('/api/v1/resourcequotas'),
    ]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KubeStatusError);
      expect(err).toMatchObject({ code: 422, reason: 'Invalid', details: { name: 'q', causes } });
      expect((err as KubeStatusError).causes).toEqual(causes);
      expect((err as Error).message).toMatch(/^(GET|PUT|PATCH) \/api\/v1\/.*: 422 ResourceQuota "q" is invalid$/);
    }
    expect(seen[0]?.headers.authorization).toBe('Bearer secret-token');
  });

  it('keeps the start of a body that is not a Status (a proxy error page) and counts a 503 against the server', async () => {
    const { client } = await serve((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html>upstream unavailable</html>');
    });
    const err = (await client.get('/api/v1/namespaces/x').catch((e: unknown) => e)) as KubeStatusError;
    expect(err).toBeInstanceOf(KubeStatusError);
    expect(err).toMatchObject({ code: 503, reason: 'HTTP503' });
    expect(err.message).toBe('GET /api/v1/namespaces/x: 503 <html>upstream unavailable</html>');
    expect(client.contact.snapshot().failure?.cause).toBe('http-503');
  });

  it('get and delete answer undefined for a 404; create, update and delete send the body as JSON', async () => {
    const { client, seen } = await serve((req, res) => {
      if (req.url.endsWith('/gone')) return json(res, 404, statusBody(404, 'NotFound', 'not found'));
      json(res, req.method === 'POST' ? 201 : 200, { kind: 'Status', details: { uid: 'u1' } });
    });
    expect(await client.get('/api/v1/namespaces/gone')).toBeUndefined();
    expect(await client.delete('/api/v1/namespaces/gone', { kind: 'DeleteOptions' })).toBeUndefined();
    await client.create('/api/v1/namespaces', { metadata: { name: 'a' } });
    await client.update('/api/v1/namespaces/a', { metadata: { name: 'a', resourceVersion: '7' } });
    expect(await client.delete('/api/v1/namespaces/a', { preconditions: { uid: 'u1' } })).toMatchObject({
      details: { uid: 'u1' },
    });
    expect(seen.map((s) => `${s.method} ${s.url} ${s.headers['content-type'] ?? '-'} ${s.body}`)).toEqual([
      'GET /api/v1/namespaces/gone - ',
      'DELETE /api/v1/namespaces/gone application/json {"kind":"DeleteOptions"}',
      'POST /api/v1/namespaces application/json {"metadata":{"name":"a"}}',
      'PUT /api/v1/namespaces/a application/json {"metadata":{"name":"a","resourceVersion":"7"}}',
      'DELETE /api/v1/namespaces/a application/json {"preconditions":{"uid":"u1"}}',
    ]);
  });

  it('applies server-side with one field manager and force; merge patches name their field manager too', async () => {
    const { client, seen } = await serve((req, res) => json(res, 200, JSON.parse(req.body)));
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'ns' } };
    expect(await client.apply('/api/v1/namespaces/ns/configmaps/c', cm, { fieldManager: 'ctl', dryRun: true })).toEqual(
      cm,
    );
    await client.mergePatch('/api/v1/namespaces/ns/configmaps/c', { data: { a: null } }, { fieldManager: 'cli' });
    expect(seen[0]).toMatchObject({
      method: 'PATCH',
      url: '/api/v1/namespaces/ns/configmaps/c?fieldManager=ctl&force=true&dryRun=All',
      headers: { 'content-type': 'application/apply-patch+yaml' },
    });
    expect(seen[1]).toMatchObject({
      url: '/api/v1/namespaces/ns/configmaps/c?fieldManager=cli',
      headers: { 'content-type': 'application/merge-patch+json' },
    });
  });

  it('lists page by page, filling apiVersion/kind; an expired continue token restarts as one full list', async () => {
    let expireOnce = true;
    const { client, seen } = await serve((req, res) => {
      const q = new URL(req.url, 'http://x').searchParams;
      const page = (items: string[], cont?: string) =>
        json(res, 200, {
          apiVersion: 'v1',
          kind: 'ConfigMapList',
          metadata: { resourceVersion: cont ? '10' : '11', continue: cont },
          items: items.map((name) => ({ metadata: { name, namespace: 'ns' } })),
        });
      if (!q.get('limit')) return page(['a', 'b', 'c']);
      if (!q.get('continue')) return page(['a'], 'tok1');
      if (q.get('continue') === 'tok1') return page(['b'], 'tok2');
      if (expireOnce) {
        expireOnce = false;
        return json(res, 410, statusBody(410, 'Expired', 'The provided continue parameter is too old'));
      }
      return page(['c']);
    });
    const first = await client.list('/api/v1/namespaces/ns/configmaps', { labelSelector: 'app=x', limit: 1 });
    expect(first.items.map((o) => `${o.apiVersion}/${o.kind}/${o.metadata.name}`)).toEqual([
      'v1/ConfigMap/a',
      'v1/ConfigMap/b',
      'v1/ConfigMap/c',
    ]);
    expect(first.resourceVersion).toBe('11');
    expect(seen.map((s) => s.url)).toEqual([
      '/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dx&limit=1',
      '/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dx&limit=1&continue=tok1',
      '/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dx&limit=1&continue=tok2',
      '/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dx',
    ]);
  });

  it('watches a newline-delimited JSON stream: events across chunk boundaries, onOpen, a normal end', async () => {
    const { client, seen } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const text = [
        { type: 'ADDED', object: { metadata: { name: 'é€', resourceVersion: '5' } } },
        { type: 'BOOKMARK', object: { metadata: { resourceVersion: '6' } } },
      ]
        .map((e) => `${JSON.stringify(e)}\n`)
        .join('');
      const bytes = Buffer.from(text);
      res.write(bytes.subarray(0, 40)); // cuts the first event (and a multi-byte character) in two
      setImmediate(() => res.end(bytes.subarray(40)));
    });
    const events: [WatchEventType, KubeObject][] = [];
    let opened = false;
    const err = await new Promise<unknown>((resolve) => {
      client.watch(
        '/api/v1/configmaps',
        { resourceVersion: '4', allowWatchBookmarks: true, labelSelector: 'a=b', timeoutSeconds: 300 },
        (type, obj) => events.push([type, obj]),
        resolve,
        () => {
          opened = true;
        },
      );
    });
    expect(err).toBeUndefined();
    expect(opened).toBe(true);
    expect(events.map(([t, o]) => `${t} ${o.metadata.name ?? '-'} ${o.metadata.resourceVersion}`)).toEqual([
      'ADDED é€ 5',
      'BOOKMARK - 6',
    ]);
    expect(seen[0]?.url).toBe(
      '/api/v1/configmaps?watch=true&timeoutSeconds=300&resourceVersion=4&allowWatchBookmarks=true&labelSelector=a%3Db',
    );
  });

  it('a refused watch ends with the KubeStatusError (410 Expired: the reflector relists)', async () => {
    const { client } = await serve((_req, res) =>
      json(res, 410, statusBody(410, 'Expired', 'too old resource version')),
    );
    const err = await new Promise<unknown>((resolve) => {
      client.watch(
        '/api/v1/configmaps',
        { resourceVersion: '1', allowWatchBookmarks: true, timeoutSeconds: 300 },
        () => undefined,
        resolve,
      );
    });
    expect(err).toBeInstanceOf(KubeStatusError);
    expect(err).toMatchObject({ code: 410, reason: 'Expired' });
  });

  it('a request aborted through its signal closes the connection and says nothing about the server', async () => {
    let closed = false;
    let arrived: () => void = () => undefined;
    const arrival = new Promise<void>((r) => {
      arrived = r;
    });
    const { client, server } = await serve(() => arrived()); // never answers
    server.on('connection', (socket) => socket.on('close', () => (closed = true)));
    const ac = new AbortController();
    const call = client.get('/apis/coordination.k8s.io/v1/namespaces/ns/leases/l', { signal: ac.signal });
    await arrival;
    ac.abort();
    await expect(call).rejects.toThrow();
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setImmediate(r));
    expect(closed).toBe(true);
    expect(client.contact.snapshot().failure).toBeUndefined();
  });

  it('shares one transport (one connection pool) per kubeconfig', async () => {
    const a = await serve((_req, res) => json(res, 200, {}));
    const b = await serve((_req, res) => json(res, 200, {}));
    expect(transportFor(a.kc)).toBe(transportFor(a.kc));
    expect(transportFor(a.kc)).not.toBe(transportFor(b.kc));
    expect(transportFor(a.kc, true)).not.toBe(transportFor(a.kc));
    const dispatchers = new Set([
      (await transportFor(a.kc).context()).dispatcher,
      (await transportFor(a.kc).context()).dispatcher,
    ]);
    expect(dispatchers.size).toBe(1);
    expect([...dispatchers][0]).toBeDefined();
  });
});

describe('LineSplitter (watch stream framing)', () => {
  const split = (chunks: Buffer[]) => {
    const s = new LineSplitter();
    const out: string[] = [];
    for (const c of chunks) s.push(c, (l) => out.push(l) > 0);
    return out;
  };

  it('yields whole lines however the bytes are chunked, including a multi-byte character cut in half', () => {
    const text = '{"a":"é€😀"}\n{"b":2}\n\n{"c":"x"}\n';
    const bytes = Buffer.from(text, 'utf8');
    const expected = ['{"a":"é€😀"}', '{"b":2}', '{"c":"x"}'];
    for (let size = 1; size <= bytes.length; size++) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      expect(split(chunks), `chunk size ${size}`).toEqual(expected);
    }
  });

  it('keeps an unterminated last line back (a torn event is never parsed)', () => {
    expect(split([Buffer.from('{"a":1}\n{"b":')])).toEqual(['{"a":1}']);
  });

  it('stops when the consumer says so', () => {
    const s = new LineSplitter();
    const out: string[] = [];
    s.push(Buffer.from('1\n2\n3\n'), (l) => out.push(l) < 2);
    expect(out).toEqual(['1', '2']);
  });
});
