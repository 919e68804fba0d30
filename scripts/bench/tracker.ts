// Watches the workspace ConfigMaps of one namespace (as admin, one list + one watch, no per-object GETs) and
// tracks, per ConfigMap, whether its status says Ready for the spec the benchmark expects.
import type { KubeConfig } from '@kubernetes/client-node';
import { collectionPath, type KubeObject } from '../../src/adapters/kubernetes.js';
import { STATUS_ANNOTATION } from '../../src/config/config.js';
import { KubeClient } from '../../src/kube/client.js';
import { parseStatus } from '../../src/reconcile/status.js';
import { Reflector } from '../../src/watch/reflector.js';

interface Expectation {
  hash: string;
  since: number;
  resolve: (at: number) => void;
}

export class StatusTracker {
  private readonly reflector: Reflector;
  /** ConfigMap name → specHash it must report as Ready. */
  private readonly expected = new Map<string, string>();
  private readonly ready = new Set<string>();
  private readonly waiters = new Map<string, Expectation>();
  private allWaiter: { resolve: () => void } | undefined;
  /** Time (performance.now) each ConfigMap first reached its expected Ready state. */
  readonly readyAt = new Map<string, number>();
  readonly phases = new Map<string, string>();

  constructor(kc: KubeConfig, namespace: string) {
    this.reflector = new Reflector({
      client: KubeClient.forConfig(kc, { listTimeoutMs: 60_000 }),
      path: collectionPath('ConfigMap', namespace),
      resource: 'configmaps',
      labelSelector: 'app=workspace-config',
    });
    const seen = (obj: KubeObject) => this.observe(obj);
    this.reflector.onAdd(seen);
    this.reflector.onUpdate((_old, obj) => seen(obj));
  }

  start(): Promise<void> {
    return this.reflector.start();
  }

  stop(): Promise<void> {
    return this.reflector.stop();
  }

  /** Sets what each ConfigMap must report (cold start). */
  expectAll(hashes: Map<string, string>): void {
    this.expected.clear();
    this.ready.clear();
    this.readyAt.clear();
    for (const [name, hash] of hashes) this.expected.set(name, hash);
    for (const obj of this.reflector.list()) this.observe(obj);
  }

  readyCount(): number {
    return this.ready.size;
  }

  /** Resolves when every expected ConfigMap reports Ready with its hash. */
  waitAllReady(timeoutMs: number): Promise<void> {
    if (this.ready.size === this.expected.size) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.allWaiter = undefined;
        reject(
          new Error(
            `only ${this.ready.size}/${this.expected.size} workspaces Ready after ${timeoutMs} ms (${this.phaseSummary()})`,
          ),
        );
      }, timeoutMs);
      this.allWaiter = {
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
    });
  }

  phaseSummary(): string {
    const counts: Record<string, number> = {};
    for (const name of this.expected.keys()) {
      const p = this.phases.get(name) ?? 'none';
      counts[p] = (counts[p] ?? 0) + 1;
    }
    return Object.entries(counts)
      .map(([p, n]) => `${p}: ${n}`)
      .join(', ');
  }

  /**
   * Expects `name` to report Ready with `hash` (after a change written at `since`); resolves with the time
   * it was observed. A later expectation for the same name replaces this one (the earlier resolves never).
   */
  expect(name: string, hash: string, since: number): Promise<number> {
    this.expected.set(name, hash);
    this.ready.delete(name);
    return new Promise((resolve) => {
      this.waiters.set(name, { hash, since, resolve });
    });
  }

  cancel(name: string): void {
    this.waiters.delete(name);
  }

  private observe(obj: KubeObject): void {
    const now = performance.now();
    const name = obj.metadata.name;
    const status = parseStatus(obj.metadata.annotations?.[STATUS_ANNOTATION]);
    if (status) this.phases.set(name, status.phase);
    const want = this.expected.get(name);
    const ok = want !== undefined && status?.phase === 'Ready' && status.specHash === want;
    if (!ok) return;
    const w = this.waiters.get(name);
    if (w && w.hash === want) {
      this.waiters.delete(name);
      w.resolve(now);
    }
    if (!this.ready.has(name)) {
      this.ready.add(name);
      if (!this.readyAt.has(name)) this.readyAt.set(name, now);
      if (this.ready.size === this.expected.size) this.allWaiter?.resolve();
    }
  }
}
