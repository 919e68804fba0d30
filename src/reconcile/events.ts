// Kubernetes Events on workspace ConfigMaps, aggregated like client-go's recorder: a repeat of the same
// (object, type, reason, message) bumps `count` on the existing Event instead of creating a new one.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeApi, KubeObject } from '../adapters/kubernetes.js';
import { clipMessage } from './status.js';

export type EventType = 'Normal' | 'Warning';

export interface EventSink {
  emit(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void>;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  firstTimestamp: string;
}

export class KubeEventRecorder implements EventSink {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly kube: KubeApi,
    private readonly component: string,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly maxRemembered = 10_000,
  ) {}

  async emit(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = obj.metadata.namespace ?? 'default';
    const msg = clipMessage(message);
    const dedupeKey = `${obj.metadata.uid}|${type}|${reason}|${msg}`;
    const now = new Date().toISOString();
    const prior = this.seen.get(dedupeKey);
    try {
      if (prior) {
        prior.count++;
        await this.kube.mergePatch(
          { apiVersion: 'v1', kind: 'Event', namespace: prior.namespace, name: prior.name },
          { count: prior.count, lastTimestamp: now },
        );
        return;
      }
      const name = `${obj.metadata.name}.${randomBytes(8).toString('hex')}`;
      await this.kube.create({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace,
          uid: obj.metadata.uid,
        },
        type,
        reason,
        message: msg,
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.instance.slice(0, 128),
      });
      if (this.seen.size >= this.maxRemembered) this.seen.delete(this.seen.keys().next().value as string);
      this.seen.set(dedupeKey, { name, namespace, count: 1, firstTimestamp: now });
    } catch (err) {
      // Events are best effort: never fail a reconcile because an Event could not be written.
      if (prior) this.seen.delete(dedupeKey);
      this.log.debug({ err, reason }, 'could not record event');
    }
  }
}
