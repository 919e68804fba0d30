// The watch layer against the real kube-apiserver, as the controller's own identity (its source-namespace
// RoleBinding, not system:masters): selectors, label removal, server-side watch timeouts, reconnects.
import { CoreV1Api, type CoreV1Api as CoreV1ApiT } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../src/kube/client.js';
import { Metrics } from '../../src/metrics/metrics.js';
import {
  type KubeObject,
  type ListOptions,
  type ListResult,
  type ListWatchClient,
  Reflector,
  type ReflectorOptions,
  type WatchEventType,
  type WatchHandle,
  type WatchOptions,
} from '../../src/watch/reflector.js';
import { bindSourceNamespace, kubeConfigFor, uniqueName, waitFor } from '../support/kube.js';

const SELECTOR = 'app=workspace-config';

let core: CoreV1ApiT;
let ns: string;

beforeAll(async () => {
  const admin = kubeConfigFor('admin');
  core = admin.makeApiClient(CoreV1Api);
  ns = uniqueName('reflector');
  await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } });
  await bindSourceNamespace(admin, ns);
});

afterAll(async () => {
  await core?.deleteNamespace({ name: ns }).catch(() => {});
});

/**
 * Wraps the real client: counts lists and watches, and lets a test cut the current stream (as a dropped
 * connection would) or black-hole it (events stop arriving but the stream stays open).
 */
class TappedClient implements ListWatchClient {
  lists = 0;
  watches: WatchOptions[] = [];
  blackHole = false;
  private current: { handle: WatchHandle; onDone: (err?: unknown) => void } | undefined;

  constructor(private readonly inner: ListWatchClient) {}

  list(path: string, opts: ListOptions): Promise<ListResult> {
    this.lists++;
    return this.inner.list(path, opts);
  }

  watch(
    path: string,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
    onOpen?: () => void,
  ): WatchHandle {
    this.watches.push(opts);
    const handle = this.inner.watch(
      path,
      opts,
      (type, obj) => {
        if (!this.blackHole) onEvent(type, obj);
      },
      onDone,
      onOpen,
    );
    this.current = { handle, onDone };
    return handle;
  }

  /** Closes the live stream and reports it to the reflector as a network error. */
  drop(): void {
    const c = this.current;
    if (!c) throw new Error('no watch to drop');
    this.current = undefined;
    c.handle.abort();
    c.onDone(new Error('read ECONNRESET (forced by test)'));
  }
}

interface Recorded {
  type: 'ADD' | 'UPDATE' | 'DELETE';
  name: string;
  data?: Record<string, string>;
}

const reflectors: Reflector[] = [];
afterEach(async () => {
  await Promise.all(reflectors.splice(0).map((r) => r.stop()));
});

function startReflector(extra: Partial<ReflectorOptions> = {}, client?: ListWatchClient) {
  const tapped = new TappedClient(client ?? KubeClient.forConfig(kubeConfigFor('controller')));
  const metrics = new Metrics('workspace', { defaultMetrics: false });
  const r = new Reflector({
    client: tapped,
    path: `/api/v1/namespaces/${ns}/configmaps`,
    resource: 'configmaps',
    labelSelector: SELECTOR,
    backoff: { initialMs: 50, maxMs: 500 },
    metrics,
    ...extra,
  });
  const events: Recorded[] = [];
  const data = (o: KubeObject) => o.data as Record<string, string> | undefined;
  r.onAdd((o) => events.push({ type: 'ADD', name: o.metadata.name, data: data(o) }));
  r.onUpdate((_old, o) => events.push({ type: 'UPDATE', name: o.metadata.name, data: data(o) }));
  r.onDelete((o) => events.push({ type: 'DELETE', name: o.metadata.name }));
  reflectors.push(r);
  return { r, tapped, events, metrics, started: r.start() };
}

async function createCm(name: string, labelled: boolean, data: Record<string, string> = { v: '1' }) {
  await core.createNamespacedConfigMap({
    namespace: ns,
    body: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: ns, labels: labelled ? { app: 'workspace-config' } : { app: 'other' } },
      data,
    },
  });
}

async function replaceData(name: string, data: Record<string, string>) {
  const cm = await core.readNamespacedConfigMap({ name, namespace: ns });
  cm.data = data;
  await core.replaceNamespacedConfigMap({ name, namespace: ns, body: cm });
}

const names = (events: Recorded[], type: Recorded['type']) => events.filter((e) => e.type === type).map((e) => e.name);

async function restarts(metrics: Metrics, reason: string): Promise<number> {
  const text = await metrics.render();
  const m = new RegExp(
    `flyte_workspace_watch_restarts_total\\{resource="configmaps",reason="${reason}"\\} (\\d+)`,
  ).exec(text);
  return Number(m?.[1] ?? 0);
}

describe('Reflector on a real kube-apiserver', () => {
  it('sees ADDED/MODIFIED/DELETED for labelled ConfigMaps only; removing the label is a DELETE', async () => {
    await createCm('pre-existing', true);
    await createCm('unlabelled-before', false);
    const { r, events, tapped, started } = startReflector();
    await started;
    expect(r.hasSynced()).toBe(true);
    expect(names(events, 'ADD')).toEqual(['pre-existing']);
    await waitFor(() => r.isLive(), { message: 'watch to be live' });

    await createCm('a', true);
    await createCm('unlabelled-after', false);
    await waitFor(() => r.get(`${ns}/a`), { message: 'ADDED a' });
    await replaceData('a', { v: '2' });
    await waitFor(() => events.find((e) => e.type === 'UPDATE' && e.name === 'a' && e.data?.v === '2'), {
      message: 'MODIFIED a',
    });
    // Label removed: the object still exists but leaves the selector → DELETED.
    await core.patchNamespacedConfigMap({
      name: 'a',
      namespace: ns,
      body: [{ op: 'remove', path: '/metadata/labels/app' }],
    });
    await waitFor(() => names(events, 'DELETE').includes('a'), { message: 'DELETED a after label removal' });
    expect(r.get(`${ns}/a`)).toBeUndefined();
    await core.deleteNamespacedConfigMap({ name: 'pre-existing', namespace: ns });
    await waitFor(() => names(events, 'DELETE').includes('pre-existing'), { message: 'DELETED pre-existing' });

    expect(events.some((e) => e.name.startsWith('unlabelled'))).toBe(false);
    expect(r.list().map((o) => o.metadata.name)).toEqual([]);
    expect(tapped.lists).toBe(1);
    // The watch asked for bookmarks and a server timeout in client-go's range.
    expect(tapped.watches[0]).toMatchObject({ allowWatchBookmarks: true, labelSelector: SELECTOR });
    expect(tapped.watches[0]?.timeoutSeconds).toBeGreaterThanOrEqual(300);
    // Objects are the server's JSON, with kind/apiVersion on listed items too.
    await createCm('shape', true);
    const shape = await waitFor(() => r.get(`${ns}/shape`));
    expect(shape).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: ns } });
    expect(shape.metadata.managedFields).toBeDefined();
    await core.deleteNamespacedConfigMap({ name: 'shape', namespace: ns });
  });

  it('survives server-side watch timeouts: re-watches from the last RV without relisting', async () => {
    const { r, tapped, events, metrics, started } = startReflector({
      minWatchTimeoutSeconds: 2,
      maxWatchTimeoutSeconds: 2,
      stallSlackSeconds: 5,
    });
    await started;
    await waitFor(() => tapped.watches.length >= 3, { timeoutMs: 20_000, message: 'two server-side timeouts' });
    expect(tapped.watches.every((w) => w.timeoutSeconds === 2)).toBe(true);
    expect(tapped.lists).toBe(1);
    expect(await restarts(metrics, 'timeout')).toBeGreaterThanOrEqual(2);
    expect(await restarts(metrics, 'error')).toBe(0);
    await createCm('after-timeouts', true);
    await waitFor(() => names(events, 'ADD').includes('after-timeouts'), { message: 'event after re-watch' });
    expect(r.isLive()).toBe(true);
    await core.deleteNamespacedConfigMap({ name: 'after-timeouts', namespace: ns });
    await waitFor(() => names(events, 'DELETE').includes('after-timeouts'));
  });

  it('misses no event across a forced reconnect (resumes the watch from the last resourceVersion)', async () => {
    await createCm('keep', true, { v: '1' });
    await createCm('doomed', true);
    const { r, tapped, events, metrics, started } = startReflector({ backoff: { initialMs: 1500, jitter: 0 } });
    await started;
    await waitFor(() => r.isLive());
    const rvBefore = r.lastSyncResourceVersion();

    tapped.drop();
    expect(r.isLive()).toBe(false);
    // Changes while disconnected (the reflector waits 1.5 s before reconnecting).
    await createCm('born-offline', true);
    await replaceData('keep', { v: '2' });
    await core.deleteNamespacedConfigMap({ name: 'doomed', namespace: ns });

    await waitFor(() => tapped.watches.length === 2, { message: 'reconnect' });
    expect(tapped.watches[1]?.resourceVersion).toBe(rvBefore);
    await waitFor(
      () =>
        names(events, 'ADD').includes('born-offline') &&
        events.some((e) => e.type === 'UPDATE' && e.name === 'keep' && e.data?.v === '2') &&
        names(events, 'DELETE').includes('doomed'),
      { message: 'all offline changes replayed' },
    );
    expect(tapped.lists).toBe(1); // replayed by the watch, no relist needed
    expect(await restarts(metrics, 'error')).toBe(1);
    await waitFor(() => r.isLive(), { message: 'live again' });
    expect(r.keys().sort()).toEqual([`${ns}/born-offline`, `${ns}/keep`]);
    await core.deleteNamespacedConfigMap({ name: 'born-offline', namespace: ns });
    await core.deleteNamespacedConfigMap({ name: 'keep', namespace: ns });
  });

  it('detects a silent (stalled) stream, relists and synthesises what it missed', async () => {
    await createCm('s-keep', true, { v: '1' });
    await createCm('s-doomed', true);
    const { r, tapped, events, metrics, started } = startReflector({ stallSeconds: 2 });
    await started;
    await waitFor(() => r.isLive());
    tapped.blackHole = true; // the connection stays open but nothing arrives: a half-open TCP connection
    await createCm('s-new', true);
    await replaceData('s-keep', { v: '2' });
    await core.deleteNamespacedConfigMap({ name: 's-doomed', namespace: ns });
    await new Promise((res) => setTimeout(res, 300));
    expect(events.filter((e) => e.name !== 's-keep' && e.name !== 's-doomed')).toEqual([]);
    tapped.blackHole = false;
    await waitFor(() => tapped.lists === 2, { timeoutMs: 10_000, message: 'stall → relist' });
    await waitFor(
      () =>
        names(events, 'ADD').includes('s-new') &&
        events.some((e) => e.type === 'UPDATE' && e.name === 's-keep' && e.data?.v === '2') &&
        names(events, 'DELETE').includes('s-doomed'),
      { message: 'relist synthesised the missed changes' },
    );
    expect(await restarts(metrics, 'stalled')).toBe(1);
    await waitFor(() => r.isLive(), { message: 'live again' });
    await core.deleteNamespacedConfigMap({ name: 's-new', namespace: ns });
    await core.deleteNamespacedConfigMap({ name: 's-keep', namespace: ns });
  });
});
