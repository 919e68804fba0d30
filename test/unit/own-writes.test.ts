import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/adapters/kubernetes.js';
import { OwnWrites } from '../../src/controller/own-writes.js';
import { stripManagedFieldsAndStatus } from '../../src/watch/reflector.js';
import { managedObjectChanged } from '../../src/watch/sources.js';

const quota = (rv: string, extra: Partial<KubeObject> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ResourceQuota',
  metadata: { name: 'q', namespace: 'flyte-a', resourceVersion: rv, labels: { a: '1' } },
  spec: { hard: { pods: '10' } },
  ...extra,
});

describe('OwnWrites', () => {
  it('recognises the echo of our write once, by resourceVersion', () => {
    const own = new OwnWrites(new Set(['ResourceQuota']));
    own.record(quota('5'));
    expect(own.isEcho('ResourceQuota', quota('5'))).toBe(true);
    // consumed: the same event again (a relist) is not an echo any more
    expect(own.isEcho('ResourceQuota', quota('5'))).toBe(false);
    expect(own.size).toBe(0);
  });

  it('treats any other resourceVersion as a change and forgets the entry', () => {
    const own = new OwnWrites(new Set(['ResourceQuota']));
    own.record(quota('7'));
    // another writer's event (lower or higher resourceVersion) is a change
    expect(own.isEcho('ResourceQuota', quota('6'))).toBe(false);
    expect(own.isEcho('ResourceQuota', quota('7'))).toBe(false);
    own.record(quota('9'));
    expect(own.isEcho('ResourceQuota', quota('10'))).toBe(false);
    expect(own.size).toBe(0);
  });

  it('recognises the DELETED event of the incarnation we deleted, not of a recreated one', () => {
    const own = new OwnWrites(new Set(['ResourceQuota']));
    const withUid = (uid: string) => quota('20', { metadata: { ...quota('20').metadata, uid } });
    own.record(quota('19'));
    own.recordDeleted('ResourceQuota', { namespace: 'flyte-a', name: 'q' }, 'uid-1');
    expect(own.isDeleteEcho('ResourceQuota', withUid('uid-1'))).toBe(true);
    expect(own.size).toBe(0); // the write record went with the object
    // someone recreated it after our delete and deleted it again: not ours
    own.recordDeleted('ResourceQuota', { namespace: 'flyte-a', name: 'q' }, 'uid-1');
    expect(own.isDeleteEcho('ResourceQuota', withUid('uid-2'))).toBe(false);
    expect(own.isDeleteEcho('ResourceQuota', withUid('uid-1'))).toBe(false); // consumed by the event above
    // a delete never recorded (someone else's) is a change; kinds we do not watch are not recorded
    expect(own.isDeleteEcho('ResourceQuota', withUid('uid-3'))).toBe(false);
    own.recordDeleted('Secret', { namespace: 'flyte-a', name: 'q' }, 'uid-4');
    expect(own.size).toBe(0);
  });

  it('recognises the echoes of several writes of one object, in order', () => {
    const own = new OwnWrites(new Set(['ConfigMap']));
    const cm = (rv: string): KubeObject => ({ ...quota(rv), kind: 'ConfigMap' });
    own.record(cm('11')); // finalizer + Provisioning
    own.record(cm('15')); // final status
    expect(own.isEcho('ConfigMap', cm('11'))).toBe(true);
    expect(own.isEcho('ConfigMap', cm('15'))).toBe(true);
    expect(own.size).toBe(0);
    // a missed first echo (relist) still lets the later one be recognised, and consumes the older write
    own.record(cm('20'));
    own.record(cm('21'));
    expect(own.isEcho('ConfigMap', cm('21'))).toBe(true);
    expect(own.isEcho('ConfigMap', cm('20'))).toBe(false);
    expect(own.size).toBe(0);
  });

  it('keeps nothing for kinds nobody watches, and distinguishes kinds and namespaces', () => {
    const own = new OwnWrites(new Set(['ResourceQuota', 'ConfigMap']));
    own.record({ apiVersion: 'v1', kind: 'Event', metadata: { name: 'e', namespace: 'x', resourceVersion: '1' } });
    expect(own.size).toBe(0);
    own.record(quota('3'));
    expect(own.isEcho('ConfigMap', quota('3'))).toBe(false);
    expect(own.isEcho('ResourceQuota', { ...quota('3'), metadata: { ...quota('3').metadata, namespace: 'b' } })).toBe(
      false,
    );
    own.forget('ResourceQuota', quota('3'));
    expect(own.size).toBe(0);
  });
});

describe('managedObjectChanged', () => {
  it('ignores status and resourceVersion, sees everything else', () => {
    const a = quota('1', { status: { used: { pods: '0' } } } as Partial<KubeObject>);
    expect(managedObjectChanged(a, quota('2', { status: { used: { pods: '3' } } } as Partial<KubeObject>))).toBe(false);
    expect(managedObjectChanged(a, quota('2', { spec: { hard: { pods: '11' } } }))).toBe(true);
    expect(managedObjectChanged(a, { ...quota('2'), metadata: { ...quota('2').metadata, labels: {} } })).toBe(true);
    expect(
      managedObjectChanged(a, {
        ...quota('2'),
        metadata: { ...quota('2').metadata, deletionTimestamp: '2026-01-01T00:00:00Z' },
      }),
    ).toBe(true);
  });
});

describe('stripManagedFieldsAndStatus', () => {
  it('drops managedFields and status, keeps the rest', () => {
    const obj = {
      ...quota('1'),
      metadata: { ...quota('1').metadata, managedFields: [{ manager: 'x' }] },
      status: { hard: { pods: '10' }, used: { pods: '1' } },
    } as unknown as KubeObject;
    const out = stripManagedFieldsAndStatus(obj) as KubeObject & { status?: unknown };
    expect(out.status).toBeUndefined();
    expect('managedFields' in out.metadata).toBe(false);
    expect(out.spec).toEqual({ hard: { pods: '10' } });
    expect(out.metadata.labels).toEqual({ a: '1' });
  });
});
