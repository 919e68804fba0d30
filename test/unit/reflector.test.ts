// The Reflector on a fake clock and a scripted fake client: no real sleeps; time moves only through
// clock.advance(), so backoff, stall and resync timings are asserted to the millisecond.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeClock, settle } from '../../harness/fake-clock.js';
import { defaultConfig, RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../../src/config/config.js';
import { KubeStatusError } from '../../src/kube/status.js';
import { Metrics } from '../../src/metrics/metrics.js';
import {
  type KubeObject,
  type ListOptions,
  type ListResult,
  type ListWatchClient,
  Reflector,
  type ReflectorOptions,
  stripManagedFields,
  type WatchEventType,
  type WatchHandle,
  type WatchOptions,
} from '../../src/watch/reflector.js';
import { configMapEventFilter, configMapSource, managedObjectSources } from '../../src/watch/sources.js';

// ---------------------------------------------------------------------------------------------------------
// A scriptable fake API server: a store with a resourceVersion counter; the test drives watch streams.

interface FakeWatch {
  path: string;
  opts: WatchOptions;
  aborted: boolean;
  done: boolean;
  emit(type: WatchEventType, obj: KubeObject): void;
  end(err?: unknown): void;
  open(): void;
}

class FakeClient implements ListWatchClient {
  objects = new Map<string, KubeObject>();
  rv = 100;
  lists: { path: string; opts: ListOptions }[] = [];
  watches: FakeWatch[] = [];
  listError: Error | undefined;

  put(name: string, data: Record<string, string> = {}, extra: Partial<KubeObject['metadata']> = {}): KubeObject {
    this.rv++;
    const obj: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: 'ns', uid: `uid-${name}`, resourceVersion: String(this.rv), ...extra },
      data,
    };
    this.objects.set(name, obj);
    return obj;
  }

  remove(name: string): KubeObject | undefined {
    const o = this.objects.get(name);
    this.objects.delete(name);
    this.rv++;
    return o && { ...o, metadata: { ...o.metadata, resourceVersion: String(this.rv) } };
  }

  async list(path: string, opts: ListOptions): Promise<ListResult> {
    this.lists.push({ path, opts });
    await Promise.resolve();
    if (this.listError) throw this.listError;
    const ns = /\/namespaces\/([^/]+)\/configmaps$/.exec(path)?.[1];
    const items = [...this.objects.values()].filter((o) => !ns || o.metadata.namespace === ns);
    return { items: items.map((o) => structuredClone(o)), resourceVersion: String(this.rv) };
  }

  watch(
    path: string,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
    onOpen?: () => void,
  ): WatchHandle {
    const w: FakeWatch = {
      path,
      opts,
      aborted: false,
      done: false,
      emit: (type, obj) => {
        if (!w.aborted && !w.done) onEvent(type, obj);
      },
      end: (err) => {
        if (w.aborted || w.done) return;
        w.done = true;
        onDone(err);
      },
      open: () => onOpen?.(),
    };
    this.watches.push(w);
    queueMicrotask(() => w.open());
    return {
      abort: () => {
        w.aborted = true;
      },
    };
  }

  get lastWatch(): FakeWatch {
    const w = this.watches.at(-1);
    if (!w) throw new Error('no watch yet');
    return w;
  }
}

/** Lets pending promise chains run (time stands still) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let round = 0; round < 20 && !cond(); round++) await settle();
  if (!cond()) throw new Error('condition not met without time passing');
}

let clock: FakeClock;
beforeEach(() => {
  clock = new FakeClock();
});

type Ev = [string, string, string?];

function recorder(r: Reflector): Ev[] {
  const events: Ev[] = [];
  r.onAdd((o) => events.push(['ADD', o.metadata.name]));
  r.onUpdate((old, o) =>
    events.push(['UPDATE', o.metadata.name, `${old.metadata.resourceVersion}->${o.metadata.resourceVersion}`]),
  );
  r.onDelete((o) => events.push(['DELETE', o.metadata.name]));
  return events;
}

const running: Reflector[] = [];
function reflector(client: FakeClient, extra: Partial<ReflectorOptions> = {}): Reflector {
  const r = new Reflector({
    client,
    path: '/api/v1/namespaces/ns/configmaps',
    labelSelector: 'app=workspace-config',
    backoff: { initialMs: 20, maxMs: 200, jitter: 0 },
    clock,
    ...extra,
  });
  running.push(r);
  return r;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

describe('Reflector', () => {
  it('lists (with selector and page size), emits ADDs, then watches from the list RV with bookmarks', async () => {
    const c = new FakeClient();
    c.put('a');
    c.put('b');
    const r = reflector(c);
    const ev = recorder(r);
    expect(r.hasSynced()).toBe(false);
    await r.start();
    expect(r.hasSynced()).toBe(true);
    expect(ev).toEqual([
      ['ADD', 'a'],
      ['ADD', 'b'],
    ]);
    expect(c.lists[0]?.opts).toMatchObject({ labelSelector: 'app=workspace-config', limit: 500 });
    await until(() => c.watches.length === 1);
    const w = c.lastWatch;
    expect(w.opts.resourceVersion).toBe('102');
    expect(w.opts.allowWatchBookmarks).toBe(true);
    expect(w.opts.labelSelector).toBe('app=workspace-config');
    expect(w.opts.timeoutSeconds).toBeGreaterThanOrEqual(300);
    expect(w.opts.timeoutSeconds).toBeLessThanOrEqual(600);
    expect(r.get('ns/a')?.metadata.name).toBe('a');
    expect(r.list().map((o) => o.metadata.name)).toEqual(['a', 'b']);
    await until(() => r.isLive());
  });

  it('applies watch events to the store and calls add/update(old,new)/delete', async () => {
    const c = new FakeClient();
    c.put('a');
    const r = reflector(c);
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.emit('ADDED', c.put('b'));
    c.lastWatch.emit('MODIFIED', c.put('a', { x: '1' }));
    c.lastWatch.emit('DELETED', c.remove('b') as KubeObject);
    expect(ev).toEqual([
      ['ADD', 'a'],
      ['ADD', 'b'],
      ['UPDATE', 'a', '101->103'],
      ['DELETE', 'b'],
    ]);
    expect(r.get('ns/a')?.data).toEqual({ x: '1' });
    expect(r.get('ns/b')).toBeUndefined();
    expect(r.lastSyncResourceVersion()).toBe('104');
  });

  it('keeps unknown fields (plain JSON, no typed-model round trip)', async () => {
    const c = new FakeClient();
    const o = c.put('a');
    (o as Record<string, unknown>).someFutureField = { keep: true };
    const r = reflector(c);
    await r.start();
    expect((r.get('ns/a') as Record<string, unknown>).someFutureField).toEqual({ keep: true });
  });

  it('transform (stripManagedFields) applies to listed and watched objects before store and handlers', async () => {
    const c = new FakeClient();
    const managedFields = [{ manager: 'm', operation: 'Apply', fieldsV1: { 'f:data': {} } }];
    c.put('a', { x: '1' }, { managedFields, labels: { app: 'workspace-config' } });
    const r = reflector(c, { transform: stripManagedFields });
    const seen: KubeObject[] = [];
    r.onAdd((o) => seen.push(o));
    r.onUpdate((_old, o) => seen.push(o));
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.emit('MODIFIED', c.put('a', { x: '2' }, { managedFields }));
    c.lastWatch.emit('ADDED', c.put('b', {}, { managedFields }));
    expect(seen.map((o) => o.metadata.name)).toEqual(['a', 'a', 'b']);
    for (const o of [...seen, ...r.list()]) expect(o.metadata).not.toHaveProperty('managedFields');
    expect(r.get('ns/a')?.metadata).toMatchObject({ name: 'a', uid: 'uid-a', resourceVersion: '102' });
    expect(r.get('ns/a')?.data).toEqual({ x: '2' });
  });

  it('on HTTP 410 relists and synthesises DELETE/UPDATE/ADD for what happened in the gap', async () => {
    const c = new FakeClient();
    const m = new Metrics('workspace', { defaultMetrics: false });
    c.put('a');
    c.put('b');
    c.put('c');
    const r = reflector(c, { metrics: m, resource: 'configmaps' });
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    // Events the watch never delivered:
    c.remove('b');
    c.put('c', { changed: 'yes' });
    c.put('d');
    c.lastWatch.end(new KubeStatusError(410, 'Expired', 'too old resource version'));
    await until(() => c.watches.length === 2);
    expect(c.lists.length).toBe(2);
    expect(ev.slice(3)).toEqual([
      ['UPDATE', 'c', '103->105'],
      ['ADD', 'd'],
      ['DELETE', 'b'],
    ]);
    expect(c.lastWatch.opts.resourceVersion).toBe('106');
    expect(r.keys().sort()).toEqual(['ns/a', 'ns/c', 'ns/d']);
    expect(await m.render()).toMatch(
      /flyte_workspace_watch_restarts_total\{resource="configmaps",reason="expired"\} 1/,
    );
  });

  it('on an in-stream ERROR 410 event relists', async () => {
    const c = new FakeClient();
    c.put('a');
    const r = reflector(c);
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    c.remove('a');
    c.lastWatch.emit('ERROR', {
      kind: 'Status',
      apiVersion: 'v1',
      code: 410,
      reason: 'Expired',
      message: 'too old',
    } as unknown as KubeObject);
    expect(c.watches[0]?.aborted).toBe(true);
    await until(() => c.watches.length === 2);
    expect(c.lists.length).toBe(2);
    expect(ev).toEqual([
      ['ADD', 'a'],
      ['DELETE', 'a'],
    ]);
  });

  it('treats a re-created object (new uid) as DELETE + ADD on relist', async () => {
    const c = new FakeClient();
    c.put('a');
    const r = reflector(c);
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    c.put('a', {}, { uid: 'uid-a-2' });
    c.lastWatch.end(new KubeStatusError(410, 'Gone', 'gone'));
    await until(() => c.watches.length === 2);
    expect(ev).toEqual([
      ['ADD', 'a'],
      ['DELETE', 'a'],
      ['ADD', 'a'],
    ]);
  });

  it('on other errors restarts the watch from the last RV with growing backoff, without relisting', async () => {
    const c = new FakeClient();
    const m = new Metrics('workspace', { defaultMetrics: false });
    c.put('a');
    const r = reflector(c, { metrics: m, resource: 'configmaps' });
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.emit('MODIFIED', c.put('a', { v: '2' }));
    c.lastWatch.end(new Error('read ECONNRESET'));
    await until(() => !r.isLive());
    await clock.advance(19);
    expect(c.watches.length).toBe(1); // 20 ms backoff not over yet
    await clock.advance(1);
    expect(c.watches.length).toBe(2);
    expect(c.lastWatch.opts.resourceVersion).toBe('102');
    c.lastWatch.end(new KubeStatusError(500, 'InternalError', 'boom'));
    await clock.advance(39);
    expect(c.watches.length).toBe(2); // 20 → 40 ms
    await clock.advance(1);
    expect(c.watches.length).toBe(3);
    expect(c.lists.length).toBe(1);
    await until(() => r.isLive()); // healthy again once the new watch is open
    expect(await m.render()).toMatch(/flyte_workspace_watch_restarts_total\{resource="configmaps",reason="error"\} 2/);
  });

  it('caps the backoff at maxMs and starts again from initialMs after resetAfterMs without errors', async () => {
    const c = new FakeClient();
    const r = reflector(c, { backoff: { initialMs: 20, maxMs: 50, jitter: 0, resetAfterMs: 1000 } });
    await r.start();
    await until(() => c.watches.length === 1);
    const gaps: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = c.watches.length;
      const t0 = clock.now();
      c.lastWatch.end(new Error('read ECONNRESET'));
      while (c.watches.length === before) await clock.advance(1);
      gaps.push(clock.now() - t0);
    }
    expect(gaps).toEqual([20, 40, 50, 50]);
    await clock.advance(1001); // a quiet spell longer than resetAfterMs
    const t0 = clock.now();
    c.lastWatch.end(new Error('read ECONNRESET'));
    while (c.watches.length === 5) await clock.advance(1);
    expect(clock.now() - t0).toBe(20);
  });

  it('retries a failing list with backoff and resolves start() once it succeeds', async () => {
    const c = new FakeClient();
    c.put('a');
    c.listError = new KubeStatusError(403, 'Forbidden', 'nope');
    const r = reflector(c);
    let synced = false;
    const started = r.start().then(() => {
      synced = true;
    });
    await until(() => c.lists.length === 1);
    await clock.advance(20);
    expect(c.lists.length).toBe(2);
    expect(synced).toBe(false);
    c.listError = undefined;
    await clock.advance(40);
    await started;
    expect(c.lists.length).toBe(3);
    expect(r.get('ns/a')).toBeDefined();
  });

  it('aborts a stalled watch (no event or bookmark within stallSeconds) and relists', async () => {
    const c = new FakeClient();
    const m = new Metrics('workspace', { defaultMetrics: false });
    c.put('a');
    const r = reflector(c, { stallSeconds: 0.15, metrics: m, resource: 'configmaps' });
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    // Activity postpones the stall.
    await clock.advance(80);
    c.lastWatch.emit('BOOKMARK', { metadata: { resourceVersion: '101' } } as KubeObject);
    await clock.advance(100);
    expect(c.watches.length).toBe(1);
    // Now silence: a change the dead stream never delivers is found by the relist, 150 ms after the bookmark.
    c.remove('a');
    await clock.advance(49);
    expect(c.watches.length).toBe(1);
    await clock.advance(1);
    expect(c.watches.length).toBe(2);
    expect(c.watches[0]?.aborted).toBe(true);
    expect(c.lists.length).toBe(2);
    expect(ev).toEqual([
      ['ADD', 'a'],
      ['DELETE', 'a'],
    ]);
    expect(await m.render()).toMatch(
      /flyte_workspace_watch_restarts_total\{resource="configmaps",reason="stalled"\} 1/,
    );
  });

  it('derives the stall limit from the watch timeout plus slack when stallSeconds is not set', async () => {
    const c = new FakeClient();
    const r = reflector(c, { minWatchTimeoutSeconds: 0, maxWatchTimeoutSeconds: 0, stallSlackSeconds: 0.1 });
    await r.start();
    await until(() => c.watches.length === 1);
    expect(c.lastWatch.opts.timeoutSeconds).toBe(0);
    await clock.advance(99);
    expect(c.watches.length).toBe(1);
    await clock.advance(1);
    expect(c.watches.length).toBe(2);
    expect(c.lists.length).toBe(2);
  });

  it('a BOOKMARK moves the resourceVersion; a normal end re-watches from it without relisting', async () => {
    const c = new FakeClient();
    const m = new Metrics('workspace', { defaultMetrics: false });
    const r = reflector(c, { metrics: m, resource: 'configmaps' });
    const ev = recorder(r);
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.emit('BOOKMARK', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { resourceVersion: '555' },
    } as KubeObject);
    expect(r.lastSyncResourceVersion()).toBe('555');
    expect(ev).toEqual([]);
    // Not a "very short watch". The gauge is a Unix time: the wall clock moves with the fake one here.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 1100);
    await clock.advance(1100);
    // Seconds since the last event is computed at scrape time.
    const sinceOf = (text: string) =>
      Number(/flyte_workspace_seconds_since_last_watch_event\{resource="configmaps"\} ([\d.e-]+)/.exec(text)?.[1]);
    const before = await m.render();
    expect(before).toMatch(/flyte_workspace_last_watch_event_timestamp_seconds\{resource="configmaps"\} \d/);
    expect(sinceOf(before)).toBeGreaterThanOrEqual(1);
    expect(sinceOf(before)).toBeLessThan(10);
    c.lastWatch.end();
    await until(() => c.watches.length === 2);
    expect(c.lastWatch.opts.resourceVersion).toBe('555');
    expect(c.lists.length).toBe(1);
    const after = await m.render();
    expect(after).toMatch(/flyte_workspace_watch_restarts_total\{resource="configmaps",reason="timeout"\} 1/);
    // A re-opened stream counts as a sign of life.
    expect(sinceOf(after)).toBeLessThan(1);
    vi.useRealTimers();
  });

  it('backs off when a watch ends immediately without events (broken proxy), instead of spinning', async () => {
    const c = new FakeClient();
    const r = reflector(c, { backoff: { initialMs: 100, maxMs: 1000, jitter: 0 } });
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.end();
    await clock.advance(99);
    expect(c.watches.length).toBe(1);
    await clock.advance(1);
    expect(c.watches.length).toBe(2);
  });

  it('calls onResync with every stored object periodically', async () => {
    const c = new FakeClient();
    c.put('a');
    c.put('b');
    const r = reflector(c, { resyncPeriodMs: 30 });
    const batches: string[][] = [];
    r.onResync((objs) => batches.push(objs.map((o) => o.metadata.name)));
    await r.start();
    await clock.advance(29);
    expect(batches).toEqual([]);
    await clock.advance(31);
    expect(batches).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    await r.stop();
    await clock.advance(300);
    expect(batches).toHaveLength(2); // no resync after stop()
  });

  it('stop() before the first list rejects start(); stop() aborts the running watch', async () => {
    const c = new FakeClient();
    c.listError = new Error('unreachable');
    const r1 = reflector(c);
    const p = r1.start();
    await r1.stop();
    await expect(p).rejects.toThrow(/stopped before it synced/);

    const c2 = new FakeClient();
    const r2 = reflector(c2);
    await r2.start();
    await until(() => c2.watches.length === 1);
    await r2.stop();
    expect(c2.lastWatch.aborted).toBe(true);
    expect(r2.isLive()).toBe(false);
    await clock.advance(1000);
    expect(c2.watches.length).toBe(1);
    expect(clock.pendingTimers()).toBe(0); // every timer cancelled
  });

  it('a throwing handler does not break the reflector', async () => {
    const c = new FakeClient();
    c.put('a');
    const r = reflector(c);
    const seen: string[] = [];
    r.onAdd(() => {
      throw new Error('handler bug');
    });
    r.onAdd((o) => seen.push(o.metadata.name));
    await r.start();
    await until(() => c.watches.length === 1);
    c.lastWatch.emit('ADDED', c.put('b'));
    expect(seen).toEqual(['a', 'b']);
  });
});

// ---------------------------------------------------------------------------------------------------------

function cm(
  annotations: Record<string, string> = {},
  data: Record<string, string> = { 'workspace.json': '{}' },
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'w', namespace: 'ns', uid: 'u1', resourceVersion: '1', annotations },
    data,
  };
}

describe('ConfigMap event filter', () => {
  it('always passes adds and deletes', () => {
    expect(configMapEventFilter('ADDED', cm())).toBe(true);
    expect(configMapEventFilter('DELETED', cm())).toBe(true);
  });

  it('ignores changes only to the status annotation, resourceVersion or managedFields', () => {
    const old = cm({ [STATUS_ANNOTATION]: '{"phase":"Pending"}' });
    const next = cm({ [STATUS_ANNOTATION]: '{"phase":"Ready"}' });
    next.metadata.resourceVersion = '2';
    next.metadata.managedFields = [{ manager: 'flyte-workspace-controller' }];
    expect(configMapEventFilter('MODIFIED', next, old)).toBe(false);
  });

  it('passes data, deletionTimestamp, finalizer, reconcile-request and uid changes', () => {
    const base = cm();
    expect(configMapEventFilter('MODIFIED', cm({}, { 'workspace.json': '{"a":1}' }), base)).toBe(true);
    const deleting = cm();
    deleting.metadata.deletionTimestamp = '2026-01-01T00:00:00Z';
    expect(configMapEventFilter('MODIFIED', deleting, base)).toBe(true);
    const fin = cm();
    fin.metadata.finalizers = ['workspaces.flyte.org/cleanup'];
    expect(configMapEventFilter('MODIFIED', fin, base)).toBe(true);
    expect(configMapEventFilter('MODIFIED', cm({ [RECONCILE_REQUEST_ANNOTATION]: 'now' }), base)).toBe(true);
    const recreated = cm();
    recreated.metadata.uid = 'u2';
    expect(configMapEventFilter('MODIFIED', recreated, base)).toBe(true);
  });

  it('data comparison ignores key order', () => {
    expect(configMapEventFilter('MODIFIED', cm({}, { a: '1', b: '2' }), cm({}, { b: '2', a: '1' }))).toBe(false);
  });
});

describe('watch sources', () => {
  it('ConfigMap sources: one reflector per namespace, selector from config, status-only updates filtered', async () => {
    const cfg = defaultConfig();
    cfg.sourceNamespaces = ['ns', 'other'];
    const c = new FakeClient();
    c.put('w', { 'workspace.json': '{}' });
    const events: string[] = [];
    const s = configMapSource({
      cfg,
      client: c,
      onEvent: (type, obj) => events.push(`${type} ${obj.metadata.name}`),
    });
    expect([...s.reflectors.keys()]).toEqual(['ns', 'other']);
    await s.start();
    try {
      expect(c.lists.map((l) => l.path).sort()).toEqual([
        '/api/v1/namespaces/ns/configmaps',
        '/api/v1/namespaces/other/configmaps',
      ]);
      expect(c.lists.every((l) => l.opts.labelSelector === cfg.configMapSelector)).toBe(true);
      await until(() => c.watches.length === 2);
      const w = c.watches.find((x) => x.path === '/api/v1/namespaces/ns/configmaps') as FakeWatch;
      const status = c.put(
        'w',
        { 'workspace.json': '{}' },
        { annotations: { [STATUS_ANNOTATION]: '{"phase":"Ready"}' } },
      );
      w.emit('MODIFIED', status);
      expect(s.get('ns/w')?.metadata.annotations?.[STATUS_ANNOTATION]).toBeDefined(); // cache is updated …
      w.emit('MODIFIED', c.put('w', { 'workspace.json': '{"x":1}' }, { annotations: status.metadata.annotations }));
      w.emit('DELETED', c.remove('w') as KubeObject);
      expect(events).toEqual(['ADDED w', 'MODIFIED w', 'DELETED w']); // … but only real changes are emitted
      expect(s.hasSynced()).toBe(true);
      expect(s.get('other/w')).toBeUndefined();
    } finally {
      await s.stop();
    }
  });

  it("ConfigMap sources watch all namespaces with one reflector for ['*']", async () => {
    const cfg = defaultConfig();
    cfg.sourceNamespaces = ['*'];
    const c = new FakeClient();
    c.put('w');
    const s = configMapSource({ cfg, client: c, onEvent: () => {} });
    await s.start();
    try {
      expect(c.lists.map((l) => l.path)).toEqual(['/api/v1/configmaps']);
      expect(s.get('ns/w')?.metadata.name).toBe('w');
    } finally {
      await s.stop();
    }
  });

  it('managed sources watch each kind cluster-wide with the managed-by selector', async () => {
    const cfg = defaultConfig();
    const c = new FakeClient();
    const synced: string[] = [];
    const s = managedObjectSources({ cfg, client: c, onEvent: () => {}, onSynced: (k) => synced.push(k) });
    await s.start();
    try {
      expect(c.lists.map((l) => l.path).sort()).toEqual([
        '/api/v1/configmaps',
        '/api/v1/namespaces',
        '/api/v1/resourcequotas',
        '/api/v1/serviceaccounts',
        '/apis/networking.k8s.io/v1/networkpolicies',
        '/apis/rbac.authorization.k8s.io/v1/rolebindings',
      ]);
      expect(new Set(c.lists.map((l) => l.opts.labelSelector))).toEqual(
        new Set([`app.kubernetes.io/managed-by=${cfg.fieldManager}`]),
      );
      expect(synced.sort()).toEqual([
        'ConfigMap',
        'Namespace',
        'NetworkPolicy',
        'ResourceQuota',
        'RoleBinding',
        'ServiceAccount',
      ]);
      expect(s.hasSynced()).toBe(true);
    } finally {
      await s.stop();
    }
  });
});
