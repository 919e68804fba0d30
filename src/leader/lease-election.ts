// Leader election on a coordination.k8s.io/v1 Lease, following client-go's tools/leaderelection
// (leaderelection.go + resourcelock/leaselock.go) step by step:
//
// * A candidate never compares its clock with timestamps in the Lease. It remembers the LOCAL (monotonic)
//   time at which it last saw the record change (`observedAt`); a lease held by someone else is valid until
//   observedAt + the record's leaseDurationSeconds. This tolerates arbitrary clock skew between nodes.
// * Writes are optimistic: PUT with the resourceVersion last read; 409 Conflict means another candidate
//   won the race, and the attempt simply fails.
// * acquire: try immediately, then every retryPeriod × (1 + rand × 1.2) until it succeeds.
//   renew: every retryPeriod, retry within renewDeadline; if renewDeadline passes without a successful
//   renew, leadership is lost: the leading signal aborts and onStoppedLeading is called at once (the daemon
//   exits, like controller-runtime).
// * release (ReleaseOnCancel): holderIdentity empty, leaseDurationSeconds 1, acquire/renew = now, so the
//   others take over within about one retry period.
// * MicroTime (acquireTime/renewTime) must have exactly 6 fractional digits on the wire: the apiserver
//   rejects a plain JS Date (3 digits). formatMicroTime pads; times read from the server are sent back
//   verbatim (the Lease is plain JSON, its MicroTimes strings).
// * Timing (retry period, renew deadline, lease validity) runs on an injectable monotonic Clock; the wall
//   clock only stamps acquireTime/renewTime, which no candidate compares.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import { type Clock, systemClock } from '../kinds/clock.js';
import { KubeClient } from '../kube/client.js';
import { type ApiServerContact, describeContactFailure } from '../kube/contact.js';
import { KubeStatusError } from '../kube/status.js';
import type { Metrics } from '../metrics/metrics.js';

/** client-go's JitterFactor: acquire retries wait retryPeriod × (1 + rand × 1.2). */
export const JITTER_FACTOR = 1.2;

export type StopReason = 'lost' | 'stopped' | 'released';

export interface LeaderCallbacks {
  /**
   * Called (asynchronously) once this candidate becomes leader. `signal` aborts when leadership ends for
   * any reason (lost, stop(), release()); work guarded by the lease must stop then.
   */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /**
   * Called once when a candidate that was leading stops leading, immediately when the lease is lost
   * (renew deadline passed) — the daemon should then exit the process, as controller-runtime does —
   * and also after stop()/release() (reason tells which). Not called if this candidate never led.
   */
  onStoppedLeading(info?: { reason: StopReason }): void;
  /** Called when the observed holder changes, including the first observation and '' after a release. */
  onNewLeader?(identity: string): void;
}

/** What the elector needs from a Kubernetes client: GET, POST and PUT of one Lease (see KubeClient). */
export type LeaseClient = Pick<KubeClient, 'get' | 'create' | 'update' | 'contact'>;

export interface LeaseElectorOptions {
  /** Cluster access through the process's KubeClient for this kubeconfig; ignored when `client` is given. */
  kc?: KubeConfig;
  /** The Lease API (a fake in unit tests); built from `kc` otherwise. */
  client?: LeaseClient;
  cfg: Pick<ControllerConfig, 'leaderElection'>;
  log: Logger;
  metrics?: Pick<Metrics, 'leaderStatus'>;
  /** Default: hostname + '_' + random UUID (as controller-runtime). */
  identity?: string;
  /** Times retries, renew deadlines and lease validity. Default: the system clock. */
  clock?: Clock;
}

/** coordination.k8s.io/v1 LeaseSpec, MicroTimes as their wire strings. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  strategy?: string;
  preferredHolder?: string;
}

export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
}

/** client-go's LeaderElectionRecord, with MicroTimes kept as their wire strings. */
export interface LeaderElectionRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: string;
  renewTime: string;
  leaseTransitions: number;
  strategy: string;
  preferredHolder: string;
}

/** Formats a time as a Kubernetes MicroTime: RFC 3339 in UTC with exactly 6 fractional digits. */
export function formatMicroTime(d: Date): string {
  // toISOString always gives milliseconds (3 digits): the microseconds are zero.
  return d.toISOString().replace(/Z$/, '000Z');
}

export function recordFromSpec(spec: LeaseSpec | undefined): LeaderElectionRecord {
  return {
    holderIdentity: spec?.holderIdentity ?? '',
    leaseDurationSeconds: spec?.leaseDurationSeconds ?? 0,
    acquireTime: spec?.acquireTime ?? '',
    renewTime: spec?.renewTime ?? '',
    leaseTransitions: spec?.leaseTransitions ?? 0,
    strategy: spec?.strategy ?? '',
    preferredHolder: spec?.preferredHolder ?? '',
  };
}

export function specFromRecord(r: LeaderElectionRecord): LeaseSpec {
  const spec: LeaseSpec = {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    leaseTransitions: r.leaseTransitions,
  };
  if (r.acquireTime) spec.acquireTime = r.acquireTime;
  if (r.renewTime) spec.renewTime = r.renewTime;
  if (r.preferredHolder) spec.preferredHolder = r.preferredHolder;
  if (r.strategy) spec.strategy = r.strategy;
  return spec;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

function httpStatus(e: unknown): number | undefined {
  return e instanceof KubeStatusError ? e.code : undefined;
}

function errMessage(e: unknown): string {
  if (e instanceof KubeStatusError) return `HTTP ${e.code}: ${e.message}`;
  if (e instanceof Error)
    return e.name === 'AbortError' || e.name === 'TimeoutError' ? `aborted (${e.name})` : e.message;
  return String(e);
}

/**
 * A signal that aborts when `parent` aborts or after `ms`; dispose() detaches it from `parent`. (Avoids
 * AbortSignal.any() on the long-lived run signal, which keeps every dependent signal reachable.)
 */
function scopedSignal(clock: Clock, parent: AbortSignal, ms: number): { signal: AbortSignal; dispose(): void } {
  const ctl = new AbortController();
  const onParent = () => ctl.abort(parent.reason);
  const timer = clock.setTimer(() => ctl.abort(new DOMException('renew deadline passed', 'TimeoutError')), ms);
  if (parent.aborted) onParent();
  else parent.addEventListener('abort', onParent, { once: true });
  return {
    signal: ctl.signal,
    dispose() {
      timer.cancel();
      parent.removeEventListener('abort', onParent);
    },
  };
}

/** Resolves after `ms` or as soon as `signal` aborts (never rejects). */
function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = clock.setTimer(done, ms);
    function done() {
      timer.cancel();
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export class LeaseElector {
  readonly identity: string;
  readonly name: string;
  readonly namespace: string;
  private readonly api: LeaseClient;
  /** Whether the API server answers: every Lease call reports here, and failures are logged in its words. */
  readonly contact: ApiServerContact;
  private readonly clock: Clock;
  private readonly path: string;
  private readonly log: Logger;
  private readonly metrics: Pick<Metrics, 'leaderStatus'> | undefined;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  /** What we write as spec.leaseDurationSeconds (client-go: int(LeaseDuration / time.Second)). */
  private readonly leaseDurationSeconds: number;

  /** Last Lease object read or written: its metadata (resourceVersion) is what Update sends. */
  private lease: Lease | undefined;
  private observedRecord: LeaderElectionRecord | undefined;
  /** Raw form of the last record obtained by GET; a change resets observedAt. */
  private observedRaw = '';
  /** clock.now() at which observedRecord was set (local, monotonic). */
  private observedAt = 0;
  private reportedLeader: string | undefined;

  private runCtl: AbortController | undefined;
  private running: Promise<void> | undefined;
  private leadingCtl: AbortController | undefined;
  private releaseOnStop = false;
  private lastReleaseOk = true;
  private callbacks: LeaderCallbacks | undefined;

  constructor(opts: LeaseElectorOptions) {
    const le = opts.cfg.leaderElection;
    if (!(le.leaseDurationSeconds > le.renewDeadlineSeconds)) {
      throw new Error('leaderElection: leaseDurationSeconds must be greater than renewDeadlineSeconds');
    }
    if (!(le.renewDeadlineSeconds > JITTER_FACTOR * le.retryPeriodSeconds)) {
      throw new Error('leaderElection: renewDeadlineSeconds must be greater than retryPeriodSeconds × 1.2');
    }
    if (!(le.retryPeriodSeconds > 0)) throw new Error('leaderElection: retryPeriodSeconds must be positive');
    if (le.leaseDurationSeconds < 1) throw new Error('leaderElection: leaseDurationSeconds must be at least 1');
    this.identity = opts.identity ?? defaultIdentity();
    this.name = le.leaseName;
    this.namespace = le.namespace;
    this.leaseDurationMs = le.leaseDurationSeconds * 1000;
    this.renewDeadlineMs = le.renewDeadlineSeconds * 1000;
    this.retryPeriodMs = le.retryPeriodSeconds * 1000;
    this.leaseDurationSeconds = Math.floor(le.leaseDurationSeconds);
    if (opts.client) this.api = opts.client;
    else if (opts.kc) this.api = KubeClient.forConfig(opts.kc);
    else throw new Error('LeaseElector needs either `client` or `kc`');
    this.contact = this.api.contact;
    this.clock = opts.clock ?? systemClock;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases`;
    this.metrics = opts.metrics;
    this.log = opts.log.child({ lease: `${this.namespace}/${this.name}`, identity: this.identity });
    this.metrics?.leaderStatus.set({ name: this.name }, 0);
  }

  /** `namespace/name` of the Lease. */
  describe(): string {
    return `${this.namespace}/${this.name}`;
  }

  /**
   * True while this candidate leads: it holds the lease as last observed, the run loop has not stopped,
   * and (stricter than client-go's IsLeader) the lease has not expired by our own local observation.
   */
  isLeader(): boolean {
    return (
      this.leadingCtl !== undefined &&
      !this.leadingCtl.signal.aborted &&
      this.holdsObservedRecord() &&
      this.isLeaseValid(this.clock.now())
    );
  }

  /** Identity of the last observed holder ('' if none or not yet observed). */
  getLeader(): string {
    return this.observedRecord?.holderIdentity ?? '';
  }

  /**
   * client-go's Check (HealthzAdaptor): an error message if we believe we lead but have not managed to
   * renew for leaseDuration + maxTolerableExpiredMs (e.g. a stuck renew loop); undefined otherwise.
   */
  check(maxTolerableExpiredMs = 20_000): string | undefined {
    if (!this.leadingCtl || this.leadingCtl.signal.aborted || !this.holdsObservedRecord()) return undefined;
    if (this.clock.now() - this.observedAt > this.leaseDurationMs + maxTolerableExpiredMs) {
      return `failed election to renew leadership on lease ${this.describe()}`;
    }
    return undefined;
  }

  /**
   * Campaigns until stop()/release(), or until leadership is lost. Resolves when the loop has ended
   * (after onStoppedLeading, if it was called).
   */
  run(callbacks: LeaderCallbacks): Promise<void> {
    if (this.running) throw new Error('LeaseElector.run: already running');
    this.callbacks = callbacks;
    this.runCtl = new AbortController();
    this.releaseOnStop = false;
    this.running = this.loop(callbacks, this.runCtl.signal).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops campaigning/renewing WITHOUT releasing the lease (as if the process died). */
  async stop(): Promise<void> {
    this.runCtl?.abort();
    await this.running;
  }

  /**
   * Stops and releases the lease if we hold it (ReleaseOnCancel): holder '', leaseDurationSeconds 1.
   * Only call after all work guarded by the lease has finished. Returns whether the lease is released
   * (true also when we did not hold it).
   */
  async release(): Promise<boolean> {
    let released = true;
    if (this.running) {
      this.releaseOnStop = true;
      this.runCtl?.abort();
      await this.running;
      released = this.lastReleaseOk;
    } else if (this.holdsObservedRecord()) {
      released = await this.tryReleaseWithDeadline();
    }
    return released;
  }

  private async loop(cb: LeaderCallbacks, stopSignal: AbortSignal): Promise<void> {
    this.lastReleaseOk = true;
    const acquired = await this.acquire(stopSignal);
    if (!acquired) return;

    const leading = new AbortController();
    this.leadingCtl = leading;
    this.metrics?.leaderStatus.set({ name: this.name }, 1);
    this.log.info('successfully acquired lease');
    queueMicrotask(() => {
      Promise.resolve()
        .then(() => cb.onStartedLeading(leading.signal))
        .catch((err: unknown) => this.log.error({ err }, 'onStartedLeading failed'));
    });

    const outcome = await this.renew(stopSignal);
    this.metrics?.leaderStatus.set({ name: this.name }, 0);
    let reason: StopReason = outcome;
    if (outcome === 'lost') {
      leading.abort(new Error(`leader election lost: ${this.describe()}`));
      this.log.error('failed to renew lease within the renew deadline: leadership lost');
    } else {
      leading.abort(new Error('leader election stopped'));
      if (this.releaseOnStop) {
        this.lastReleaseOk = await this.tryReleaseWithDeadline();
        reason = 'released';
      }
      this.log.info({ reason }, 'stopped leading');
    }
    try {
      cb.onStoppedLeading({ reason });
    } catch (err) {
      this.log.error({ err }, 'onStoppedLeading failed');
    }
  }

  /** client-go acquire(): JitterUntil(tryAcquireOrRenew, retryPeriod, 1.2, sliding) until success or stop. */
  private async acquire(stopSignal: AbortSignal): Promise<boolean> {
    this.log.info('attempting to acquire leader lease');
    while (!stopSignal.aborted) {
      const attempt = scopedSignal(this.clock, stopSignal, this.renewDeadlineMs);
      const ok = await this.tryAcquireOrRenew(attempt.signal).finally(() => attempt.dispose());
      this.maybeReportTransition();
      if (ok && !stopSignal.aborted) return true;
      if (ok) return this.stoppedRightAfterAcquire();
      this.log.debug({ holder: this.getLeader() }, 'failed to acquire lease');
      await sleep(this.clock, this.retryPeriodMs * (1 + Math.random() * JITTER_FACTOR), stopSignal);
    }
    return false;
  }

  /** stop() raced with a successful acquire: we hold the lease but will not lead; release if asked. */
  private async stoppedRightAfterAcquire(): Promise<boolean> {
    if (this.releaseOnStop) this.lastReleaseOk = await this.tryReleaseWithDeadline();
    return false;
  }

  /**
   * client-go renew(): every retryPeriod, PollUntilContextTimeout(retryPeriod, renewDeadline, immediate)
   * of tryAcquireOrRenew. Returns 'lost' when a renew round exhausts renewDeadline, 'stopped' on stop.
   */
  private async renew(stopSignal: AbortSignal): Promise<'lost' | 'stopped'> {
    while (!stopSignal.aborted) {
      const { signal: round, dispose } = scopedSignal(this.clock, stopSignal, this.renewDeadlineMs);
      let ok = false;
      try {
        while (!round.aborted) {
          ok = await this.tryAcquireOrRenew(round);
          if (ok || round.aborted) break;
          await sleep(this.clock, this.retryPeriodMs, round);
        }
      } finally {
        dispose();
      }
      this.maybeReportTransition();
      if (stopSignal.aborted) return 'stopped';
      // A renew that completed just as the deadline fired still counts, as in client-go's select.
      if (!ok) return 'lost';
      this.log.trace('successfully renewed lease');
      await sleep(this.clock, this.retryPeriodMs, stopSignal);
    }
    return 'stopped';
  }

  /** client-go tryAcquireOrRenew(): true when we hold the lease after this call. */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const nowWall = new Date();
    const now = this.clock.now();
    const nowMicro = formatMicroTime(nowWall);
    const desired: LeaderElectionRecord = {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.leaseDurationSeconds,
      acquireTime: nowMicro,
      renewTime: nowMicro,
      leaseTransitions: 0,
      strategy: '',
      preferredHolder: '',
    };

    // 1. Fast path: the leader updates optimistically, assuming the record it last saw is current.
    if (this.holdsObservedRecord() && this.isLeaseValid(now) && this.lease && this.observedRecord) {
      desired.acquireTime = this.observedRecord.acquireTime;
      desired.leaseTransitions = this.observedRecord.leaseTransitions;
      try {
        await this.update(desired, signal);
        this.setObservedRecord(desired);
        return true;
      } catch (e) {
        if (signal.aborted) return false;
        this.log.debug({ reason: this.reason(e) }, 'failed to update lease optimistically, falling back to slow path');
      }
    }

    // 2. Obtain or create the record.
    let lease: Lease | undefined;
    try {
      lease = await this.read(signal);
    } catch (e) {
      if (!signal.aborted) this.log.error({ reason: this.reason(e) }, 'error retrieving lease');
      return false;
    }
    if (!lease) {
      try {
        this.lease = await this.api.create<Lease>(
          this.path,
          {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.name, namespace: this.namespace },
            spec: specFromRecord(desired),
          },
          { signal },
        );
      } catch (e2) {
        const code = httpStatus(e2);
        if (code === 409) this.log.debug('lease created concurrently by another candidate');
        else if (!signal.aborted) this.log.error({ reason: this.reason(e2) }, 'error initially creating lease');
        return false;
      }
      this.setObservedRecord(desired);
      return true;
    }
    this.lease = lease;

    // 3. Record obtained: note when we saw it change (our clock), then check identity and expiry.
    const old = recordFromSpec(lease.spec);
    const raw = JSON.stringify(old);
    if (raw !== this.observedRaw) {
      this.setObservedRecord(old);
      this.observedRaw = raw;
    }
    if (old.holderIdentity.length > 0 && this.isLeaseValid(now) && !this.holdsObservedRecord()) {
      this.log.trace({ holder: old.holderIdentity }, 'lease is held by another candidate and has not yet expired');
      return false;
    }

    // 4. Try to update: keep acquireTime/transitions when renewing, count a transition when taking over.
    if (this.holdsObservedRecord()) {
      desired.acquireTime = old.acquireTime;
      desired.leaseTransitions = old.leaseTransitions;
    } else {
      desired.leaseTransitions = old.leaseTransitions + 1;
    }
    try {
      await this.update(desired, signal);
    } catch (e) {
      if (httpStatus(e) === 409) this.log.debug('lost the race to update the lease (409 Conflict)');
      else if (!signal.aborted) this.log.error({ reason: this.reason(e) }, 'failed to update lease');
      return false;
    }
    this.setObservedRecord(desired);
    return true;
  }

  /** LeaseLock.Update: PUT the last seen object (its resourceVersion) with the new spec. */
  private async update(record: LeaderElectionRecord, signal: AbortSignal): Promise<void> {
    if (!this.lease) throw new Error('lease not initialized, call get or create first');
    const body: Lease = {
      ...this.lease,
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      spec: specFromRecord(record),
    };
    this.lease = await this.api.update<Lease>(`${this.path}/${encodeURIComponent(this.name)}`, body, { signal });
  }

  /** LeaseLock.Get: the Lease, or undefined when there is none yet. */
  private read(signal: AbortSignal): Promise<Lease | undefined> {
    return this.api.get<Lease>(`${this.path}/${encodeURIComponent(this.name)}`, { signal });
  }

  private async tryReleaseWithDeadline(): Promise<boolean> {
    const deadline = new AbortController();
    const timer = this.clock.setTimer(
      () => deadline.abort(new DOMException('renew deadline passed', 'TimeoutError')),
      this.renewDeadlineMs,
    );
    try {
      return await this.tryRelease(deadline.signal);
    } catch (e) {
      this.log.error({ reason: this.reason(e) }, 'failed to release lease');
      return false;
    } finally {
      timer.cancel();
    }
  }

  /** client-go tryRelease(): GET, and if we hold it, PUT holder '' / duration 1; retry on conflict. */
  private async tryRelease(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      let lease: Lease | undefined;
      try {
        lease = await this.read(signal);
      } catch (e) {
        this.log.error({ reason: this.reason(e) }, 'error retrieving lease');
        return false;
      }
      if (!lease) {
        this.log.error('lease not found');
        return false;
      }
      this.lease = lease;
      const current = recordFromSpec(lease.spec);
      // client-go checks its last observed record; we also require the fresh record to name us, so a lease
      // that another candidate has taken over meanwhile is never cleared.
      if (!this.holdsObservedRecord() || current.holderIdentity !== this.identity) return true;
      const now = formatMicroTime(new Date());
      const released: LeaderElectionRecord = {
        holderIdentity: '',
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: current.leaseTransitions,
        strategy: '',
        preferredHolder: '',
      };
      try {
        await this.update(released, signal);
      } catch (e) {
        if (httpStatus(e) === 409 && !signal.aborted) {
          this.log.debug('conflict when releasing lease, retrying');
          continue;
        }
        this.log.error({ reason: this.reason(e) }, 'failed to release lease');
        return false;
      }
      this.setObservedRecord(released);
      this.maybeReportTransition();
      this.log.info('released lease');
      return true;
    }
  }

  /** Why a Lease call failed: the server and the cause when it was not reached, else the API's answer. */
  private reason(e: unknown): string {
    const failure = describeContactFailure(this.contact.server, e);
    if (!failure) return errMessage(e);
    return httpStatus(e) === undefined ? failure.message : `${failure.message} (${errMessage(e)})`;
  }

  private holdsObservedRecord(): boolean {
    return this.observedRecord?.holderIdentity === this.identity;
  }

  /** observedAt + the observed record's leaseDurationSeconds is still in the future (local clock). */
  private isLeaseValid(now: number): boolean {
    if (!this.observedRecord) return false;
    return this.observedAt + this.observedRecord.leaseDurationSeconds * 1000 > now;
  }

  private setObservedRecord(r: LeaderElectionRecord): void {
    this.observedRecord = { ...r };
    this.observedAt = this.clock.now();
  }

  private maybeReportTransition(): void {
    const holder = this.observedRecord?.holderIdentity ?? '';
    if (holder === this.reportedLeader) return;
    this.reportedLeader = holder;
    if (holder && holder !== this.identity) this.log.info({ holder }, 'new leader observed');
    const cb = this.callbacks?.onNewLeader;
    if (cb) {
      queueMicrotask(() => {
        try {
          cb(holder);
        } catch (err) {
          this.log.error({ err }, 'onNewLeader failed');
        }
      });
    }
  }
}
