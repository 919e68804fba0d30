// The reconciler's branches, each ending in its one exit (status written once, the Event, the queue's next
// move), against fakes: a KubeApi that keeps objects in memory and records every apply, scripted steps,
// recorded Events, and the real lanes and claim index (both pure logic).
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { workspaceConfigMap, workspaceDoc } from '../../harness/workspaces.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import type { KubeApi, KubeObject } from '../../src/adapters/kubernetes.js';
import { defaultConfig, FINALIZER, RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../../src/config/config.js';
import type { ObjectRef } from '../../src/kinds/kubernetes.js';
import { ClaimIndex } from '../../src/reconcile/claims.js';
import type { EventSink, EventType } from '../../src/reconcile/events.js';
import { SystemLane } from '../../src/reconcile/lanes.js';
import { matchesSelector, RetryableReconcileError, WorkspaceReconciler } from '../../src/reconcile/reconciler.js';
import { parseStatus, type WorkspaceStatus } from '../../src/reconcile/status.js';
import type {
  StepBaseContext,
  StepContext,
  StepName,
  StepOutcome,
  StepResult,
  WorkspaceStep,
} from '../../src/reconcile/types.js';
import { parseWorkspace } from '../../src/spec/workspace.js';

const NS = 'workspace-platform';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/FlyteWorkspace-ws1-Role';

const ready = (writes = 0, result?: StepResult): StepOutcome => ({
  state: 'Ready',
  reason: writes > 0 ? 'Applied' : 'UpToDate',
  message: 'ok',
  writes,
  ...(result ? { result } : {}),
});
const deleted = (): StepOutcome => ({ state: 'Deleted', reason: 'Deleted', message: 'gone', writes: 1 });
const failed = (reason: string, message: string, retryable: boolean): StepOutcome => ({
  state: 'Failed',
  reason,
  message,
  writes: 0,
  retryable,
});

/** A kube-apiserver in memory: server-side apply of the controller's own fields, and every apply recorded. */
class FakeKube implements KubeApi {
  readonly stats = new CallStats('kubernetes');
  readonly objects = new Map<string, KubeObject>();
  readonly applies: KubeObject[] = [];
  applyError: Error | undefined;

  async get(ref: ObjectRef): Promise<KubeObject | undefined> {
    const o = this.objects.get(`${ref.namespace}/${ref.name}`);
    return o && structuredClone(o);
  }

  async apply(body: KubeObject): Promise<KubeObject> {
    this.applies.push(structuredClone(body));
    if (this.applyError) throw this.applyError;
    const key = `${body.metadata.namespace}/${body.metadata.name}`;
    const live = structuredClone(this.objects.get(key) as KubeObject);
    live.metadata.annotations = { ...live.metadata.annotations, ...body.metadata.annotations };
    // The field manager owns the finalizer it applied: leaving it out of the applied config removes it.
    const others = (live.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    live.metadata.finalizers = [...others, ...(body.metadata.finalizers ?? [])];
    if (live.metadata.deletionTimestamp && live.metadata.finalizers.length === 0) this.objects.delete(key);
    else this.objects.set(key, live);
    return structuredClone(live);
  }

  list(): Promise<KubeObject[]> {
    throw new Error('the reconciler does not list');
  }
  mergePatch(): Promise<KubeObject> {
    throw new Error('the reconciler does not merge-patch');
  }
  create(): Promise<KubeObject> {
    throw new Error('the reconciler creates nothing itself');
  }
  delete(): Promise<boolean> {
    throw new Error('the reconciler deletes nothing itself');
  }
}

class RecordedEvents implements EventSink {
  readonly events: { on: string; type: EventType; reason: string; message: string }[] = [];
  async emit(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void> {
    this.events.push({ on: obj.metadata.name, type, reason, message });
  }
}

/** A step whose answers the test scripts; it records the contexts it was called with. */
class ScriptedStep implements WorkspaceStep {
  readonly ensured: StepContext[] = [];
  readonly tornDown: StepBaseContext[] = [];
  ensureWith: (ctx: StepContext) => Promise<StepOutcome>;
  teardownWith: () => Promise<StepOutcome> = async () => deleted();

  constructor(
    readonly name: StepName,
    private readonly calls: string[],
    result: StepResult,
  ) {
    this.ensureWith = async () => ready(1, result);
  }

  ensure(ctx: StepContext): Promise<StepOutcome> {
    this.ensured.push(ctx);
    this.calls.push(`ensure ${this.name}`);
    return this.ensureWith(ctx);
  }

  teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    this.tornDown.push(ctx);
    this.calls.push(`teardown ${this.name}`);
    return this.teardownWith();
  }
}

/** A step answer the test releases by hand (the call is still out in its lane until then). */
function gate() {
  let release!: (o: StepOutcome) => void;
  const answer = new Promise<StepOutcome>((res) => {
    release = res;
  });
  return { answer: () => answer, release };
}

const flush = async () => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

function world(opts: { lanes?: boolean } = {}) {
  const cfg = defaultConfig();
  const kube = new FakeKube();
  // The informer's view: labelled ConfigMaps, each write seen at once.
  const sources = {
    get: (key: string) => {
      const o = kube.objects.get(key);
      return o && matchesSelector(o, cfg.configMapSelector) ? o : undefined;
    },
  };
  const claims = new ClaimIndex(sources, cfg.configMapKey, (raw) => {
    const parsed = parseWorkspace(raw, cfg);
    return parsed.ok ? parsed.spec.workspaceId : undefined;
  });
  const events = new RecordedEvents();
  const calls: string[] = [];
  const kubernetes = new ScriptedStep('kubernetes', calls, { namespaces: ['flyte-ws1'] });
  const iam = new ScriptedStep('iam', calls, { roleArn: ROLE_ARN });
  const flyte = new ScriptedStep('flyte', calls, { projectId: 'ws1' });
  // The Kubernetes step puts the ARN it was given on the runner ServiceAccount (as the real one does).
  kubernetes.ensureWith = async (ctx) => {
    ctx.outputs.serviceAccountRoleArn = ctx.outputs.roleArn ?? ROLE_ARN;
    return ready(1, { namespaces: ['flyte-ws1'] });
  };
  const enqueued: string[] = [];
  const askedAgain: string[] = [];
  const lanes: Partial<Record<StepName, SystemLane>> = {};
  const reconciler: WorkspaceReconciler = new WorkspaceReconciler({
    cfg,
    kube,
    steps: [kubernetes, iam, flyte],
    sources,
    claims,
    events,
    log: pino({ level: 'silent' }),
    enqueue: (key) => enqueued.push(key),
    ...(opts.lanes ? { lanes } : {}),
  });
  for (const system of ['iam', 'flyte'] as const) {
    lanes[system] = new SystemLane({
      system,
      capacity: 4,
      onSettled: (key, token, outcome) => {
        const matters = reconciler.laneSettled(key, token, system, outcome);
        if (matters) askedAgain.push(key);
        return matters;
      },
    });
  }
  let created = 0;
  /** Creates or edits a workspace ConfigMap the way the platform does: its data and labels, never our fields. */
  const put = (name: string, doc: unknown, annotations: Record<string, string> = {}): string => {
    const key = `${NS}/${name}`;
    const fresh = workspaceConfigMap(NS, name, doc, annotations);
    const live = kube.objects.get(key);
    if (live) {
      live.data = fresh.data;
      live.metadata.annotations = { ...live.metadata.annotations, ...annotations };
    } else {
      fresh.metadata.uid = `uid-${name}`;
      fresh.metadata.creationTimestamp = `2026-01-01T00:00:0${created++}Z`;
      kube.objects.set(key, fresh);
    }
    claims.update(key, kube.objects.get(key) as KubeObject);
    return key;
  };
  const object = (key: string) => kube.objects.get(key);
  /** What `kubectl delete` does to an object that carries a finalizer: it only marks it. */
  const markDeleted = (key: string) => {
    (object(key) as KubeObject).metadata.deletionTimestamp = '2026-01-02T00:00:00Z';
  };
  const status = (key: string): WorkspaceStatus | undefined =>
    parseStatus(object(key)?.metadata.annotations?.[STATUS_ANNOTATION]);
  const readyCondition = (key: string) => status(key)?.conditions.find((c) => c.type === 'Ready');
  /** A provisioned workspace ws1, with the applies and Events of its provisioning cleared. */
  const provisioned = async (name = 'w1', doc = workspaceDoc('ws1')): Promise<string> => {
    const key = put(name, doc);
    await reconciler.reconcile(key);
    expect(status(key)?.phase).toBe('Ready');
    for (const s of [kubernetes, iam, flyte]) s.ensured.length = 0;
    kube.applies.length = 0;
    events.events.length = 0;
    calls.length = 0;
    return key;
  };
  return {
    cfg,
    kube,
    claims,
    events: events.events,
    calls,
    steps: { kubernetes, iam, flyte },
    reconciler,
    enqueued,
    askedAgain,
    put,
    object,
    markDeleted,
    status,
    readyCondition,
    provisioned,
  };
}

describe('WorkspaceReconciler: ensure', () => {
  it('puts the finalizer on before any step runs, writes status once at the end, and nothing on the repeat', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    let finalizerWhenStepsRan: string[] | undefined;
    const ensureKubernetes = w.steps.kubernetes.ensureWith;
    w.steps.kubernetes.ensureWith = async (ctx) => {
      finalizerWhenStepsRan = w.object(key)?.metadata.finalizers;
      return ensureKubernetes(ctx);
    };

    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(finalizerWhenStepsRan).toEqual([FINALIZER]);
    expect(w.kube.applies).toHaveLength(2); // the Provisioning claim, then the one summary
    const claim = parseStatus(w.kube.applies[0]?.metadata.annotations?.[STATUS_ANNOTATION]);
    expect(claim).toMatchObject({ phase: 'Provisioning', workspaceId: 'ws1', owner: true });
    expect(w.kube.applies[0]?.metadata.finalizers).toEqual([FINALIZER]);
    const s = w.status(key);
    expect(s).toMatchObject({
      phase: 'Ready',
      workspaceId: 'ws1',
      owner: true,
      namespaces: ['flyte-ws1'],
      roleArn: ROLE_ARN,
      flyteProject: 'ws1',
    });
    expect(s?.observedSpecHash).toBe(s?.specHash);
    expect(w.readyCondition(key)).toMatchObject({
      status: 'True',
      reason: 'Provisioned',
      message: 'workspace provisioned',
    });
    expect(s?.conditions.map((c) => `${c.type}=${c.status}`)).toEqual([
      'Ready=True',
      'KubernetesReady=True',
      'IAMReady=True',
      'FlyteReady=True',
    ]);
    expect(Object.values(s?.steps ?? {}).map((step) => step.reason)).toEqual(['Synced', 'Synced', 'Synced']);
    expect(w.events).toEqual([
      { on: 'w1', type: 'Normal', reason: 'Provisioned', message: 'workspace ws1 ready (3 change(s))' },
    ]);

    w.steps.kubernetes.ensureWith = async (ctx) => {
      ctx.outputs.serviceAccountRoleArn = ctx.outputs.roleArn;
      return ready(0, { namespaces: ['flyte-ws1'] });
    };
    w.steps.iam.ensureWith = async () => ready(0, { roleArn: ROLE_ARN });
    w.steps.flyte.ensureWith = async () => ready(0, { projectId: 'ws1' });
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(2); // a no-op reconcile writes nothing
    expect(w.events).toHaveLength(1);
    expect(w.steps.iam.ensured).toHaveLength(2);
    expect(w.steps.iam.ensured[1]?.specUnchanged).toBe(true);
  });

  it('a changed spec is one status write; drift repaired under an unchanged spec is an Event and no write', async () => {
    const w = world();
    const key = await w.provisioned();
    const before = w.status(key);
    w.put('w1', workspaceDoc('ws1', { workspace_name: 'Renamed' }));
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(1);
    expect(w.status(key)?.specHash).not.toBe(before?.specHash);
    expect(w.events.map((e) => e.reason)).toEqual(['Provisioned']);
    expect(w.steps.kubernetes.ensured[0]?.specUnchanged).toBe(false);

    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(1);
    expect(w.events.map((e) => e.reason)).toEqual(['Provisioned', 'DriftRepaired']);
    expect(w.events[1]?.message).toBe('workspace ws1 ready (3 change(s))');
  });

  it('a retryable failure: Failed with the step named, a Warning Event, and RetryableReconcileError for the backoff', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    w.steps.iam.ensureWith = async () => failed('IamUnavailable', 'throttled', true);
    await expect(w.reconciler.reconcile(key)).rejects.toThrow(new RetryableReconcileError('iam: throttled'));
    expect(w.status(key)).toMatchObject({ phase: 'Failed', lastError: 'iam: throttled' });
    expect(w.status(key)?.steps.iam).toMatchObject({ state: 'Failed', reason: 'IamUnavailable' });
    expect(w.readyCondition(key)).toMatchObject({
      status: 'False',
      reason: 'IamUnavailable',
      message: 'iam: throttled',
    });
    expect(w.events).toEqual([{ on: 'w1', type: 'Warning', reason: 'IamUnavailable', message: 'iam: throttled' }]);
    expect(w.steps.flyte.ensured).toHaveLength(1); // a failure does not stop the steps after it
    expect(w.status(key)?.observedSpecHash).toBeUndefined();
  });

  it('a step that throws an unexpected error is a retryable failure', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    w.steps.flyte.ensureWith = async () => {
      throw new Error('socket hang up');
    };
    await expect(w.reconciler.reconcile(key)).rejects.toBeInstanceOf(RetryableReconcileError);
    expect(w.status(key)).toMatchObject({ phase: 'Failed', lastError: 'flyte: socket hang up' });
  });

  it('a terminal failure is reported and settles: no retry until the spec changes or a rerun', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    w.steps.flyte.ensureWith = async () => failed('FlyteInvalidArgument', 'project name rejected', false);
    expect(await w.reconciler.reconcile(key)).toEqual({ terminalError: 'flyte: project name rejected' });
    expect(w.status(key)?.phase).toBe('Failed');
    expect(w.events).toEqual([
      { on: 'w1', type: 'Warning', reason: 'FlyteInvalidArgument', message: 'flyte: project name rejected' },
    ]);
  });

  it('a step Conflict: phase Conflict, and no later step runs', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    w.steps.iam.ensureWith = async () => ({
      state: 'Conflict',
      reason: 'RoleNotOwned',
      message: 'role exists without our tag',
      writes: 0,
    });
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.status(key)?.phase).toBe('Conflict');
    expect(w.readyCondition(key)).toMatchObject({
      reason: 'RoleNotOwned',
      message: 'iam: role exists without our tag',
    });
    expect(w.steps.flyte.ensured).toHaveLength(0);
    expect(w.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning RoleNotOwned']);
  });

  it('redoes the Kubernetes step when IAM returns another role ARN than the ServiceAccount carries', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1'));
    const returned = 'arn:aws:iam::123456789012:role/path/FlyteWorkspace-ws1-Role';
    w.steps.iam.ensureWith = async () => ready(1, { roleArn: returned });
    const onServiceAccount: (string | undefined)[] = [];
    const ensureKubernetes = w.steps.kubernetes.ensureWith;
    w.steps.kubernetes.ensureWith = async (ctx) => {
      const outcome = await ensureKubernetes(ctx);
      onServiceAccount.push(ctx.outputs.serviceAccountRoleArn);
      return outcome;
    };
    await w.reconciler.reconcile(key);
    expect(onServiceAccount).toEqual([ROLE_ARN, returned]);
    expect(w.status(key)?.roleArn).toBe(returned);
    expect(w.kube.applies).toHaveLength(2);
  });

  it('a status that cannot be written is retried', async () => {
    const w = world();
    const key = await w.provisioned();
    w.put('w1', workspaceDoc('ws1', { workspace_name: 'Renamed' }));
    w.kube.applyError = new Error('etcdserver: request timed out');
    await expect(w.reconciler.reconcile(key)).rejects.toThrow(
      new RetryableReconcileError('could not write status: etcdserver: request timed out'),
    );
    expect(w.events).toEqual([]);
  });
});

describe('WorkspaceReconciler: steps in lanes', () => {
  it('a step still running in its lane: Provisioning, waiting, no Event; the reconcile the lane asks for finishes', async () => {
    const w = world({ lanes: true });
    const key = w.put('w1', workspaceDoc('ws1'));
    const iamAnswer = gate();
    w.steps.iam.ensureWith = iamAnswer.answer;

    expect(await w.reconciler.reconcile(key)).toEqual({ waiting: true });
    expect(w.reconciler.hasPass(key)).toBe(true);
    expect(w.status(key)?.phase).toBe('Provisioning');
    expect(w.status(key)?.steps.iam).toMatchObject({ state: 'Progressing', reason: 'IamInProgress' });
    expect(w.readyCondition(key)).toMatchObject({ status: 'False', reason: 'IamInProgress' });
    expect(w.status(key)?.lastError).toBeUndefined();
    expect(w.steps.flyte.ensured).toHaveLength(0); // create order: Flyte waits for IAM
    expect(w.events).toEqual([]);

    iamAnswer.release(ready(1, { roleArn: ROLE_ARN }));
    await flush();
    expect(w.askedAgain).toEqual([key]);
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.steps.iam.ensured).toHaveLength(1); // the lane's outcome is taken, not asked for again
    expect(w.status(key)?.phase).toBe('Ready');
    expect(w.events.map((e) => e.reason)).toEqual(['Provisioned']);
    expect(w.reconciler.hasPass(key)).toBe(false);
  });

  it('a drift check in a lane shows the recorded Ready, writes nothing, and asks for no reconcile when it finds nothing', async () => {
    const w = world({ lanes: true });
    const key = await w.provisioned();
    const check = gate();
    w.steps.flyte.ensureWith = check.answer;
    expect(await w.reconciler.reconcile(key)).toEqual({ waiting: true });
    expect(w.kube.applies).toHaveLength(0);
    expect(w.status(key)?.steps.flyte?.state).toBe('Ready');

    check.release(ready(0, { projectId: 'ws1' }));
    await flush();
    expect(w.askedAgain).toEqual([]);
    expect(w.reconciler.hasPass(key)).toBe(false);
  });

  it('a Kubernetes drift repair during a background drift check is reported at once: that check may never ask again', async () => {
    const w = world({ lanes: true });
    const key = await w.provisioned();
    const check = gate();
    w.steps.iam.ensureWith = async () => ready(0, { roleArn: ROLE_ARN });
    w.steps.flyte.ensureWith = check.answer;
    expect(await w.reconciler.reconcile(key)).toEqual({ waiting: true });
    expect(w.events).toEqual([
      { on: 'w1', type: 'Normal', reason: 'DriftRepaired', message: 'workspace ws1 ready (1 change(s))' },
    ]);

    check.release(ready(0, { projectId: 'ws1' }));
    await flush();
    expect(w.askedAgain).toEqual([]);
    expect(w.events).toHaveLength(1);
  });

  it('a retryable Kubernetes failure during a background drift check is retried, not left to the check', async () => {
    const w = world({ lanes: true });
    const key = await w.provisioned();
    const check = gate();
    w.steps.flyte.ensureWith = check.answer;
    w.steps.kubernetes.ensureWith = async () => failed('Forbidden', 'rolebindings is forbidden', true);
    await expect(w.reconciler.reconcile(key)).rejects.toThrow(
      new RetryableReconcileError('kubernetes: rolebindings is forbidden'),
    );
    expect(w.status(key)).toMatchObject({ phase: 'Failed', lastError: 'kubernetes: rolebindings is forbidden' });
    expect(w.events.map((e) => e.reason)).toEqual(['Forbidden']);
    check.release(ready(0, { projectId: 'ws1' }));
    await flush();
  });
});

describe('WorkspaceReconciler: invalid documents', () => {
  it('a bad field: Invalid naming it, a Warning Event, the last good state kept, nothing torn down', async () => {
    const w = world();
    const key = await w.provisioned();
    const good = w.status(key);
    w.put('w1', workspaceDoc('ws1', { data_bucket: 'someone-elses-bucket' }));

    expect(await w.reconciler.reconcile(key)).toEqual({});
    const s = w.status(key);
    expect(s?.phase).toBe('Invalid');
    expect(s?.invalidFields?.map((f) => f.field)).toEqual(['data_bucket']);
    expect(s?.lastError).toMatch(/^invalid workspace\.json: data_bucket/);
    expect(s?.specHash).toBeUndefined();
    expect(s).toMatchObject({ owner: true, workspaceId: 'ws1', namespaces: good?.namespaces, steps: good?.steps });
    expect(s?.observedSpecHash).toBe(good?.observedSpecHash);
    expect(w.readyCondition(key)).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    // The step conditions stay as they were: nothing changed in the systems.
    expect(s?.conditions.slice(1)).toEqual(good?.conditions.slice(1));
    expect(w.object(key)?.metadata.finalizers).toEqual([FINALIZER]);
    expect(w.events).toEqual([{ on: 'w1', type: 'Warning', reason: 'InvalidSpec', message: s?.lastError }]);
    expect(w.calls).toEqual([]);

    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(1); // the same report again writes nothing
  });

  it('a document that is not JSON, on a ConfigMap that never provisioned: Invalid, and no finalizer', async () => {
    const w = world();
    const key = w.put('w1', '{"workspace_id": ');
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.status(key)?.phase).toBe('Invalid');
    expect(w.status(key)?.invalidFields).toHaveLength(1);
    expect(w.object(key)?.metadata.finalizers).toEqual([]);
    expect(w.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning InvalidSpec']);
    expect(w.calls).toEqual([]);
  });

  it('refuses to change the workspace_id of a provisioned workspace, which stays provisioned and claimed', async () => {
    const w = world();
    const key = await w.provisioned();
    w.put('w1', workspaceDoc('ws2'));
    expect(await w.reconciler.reconcile(key)).toEqual({});
    const s = w.status(key);
    expect(s).toMatchObject({ phase: 'Invalid', workspaceId: 'ws1', owner: true });
    expect(s?.invalidFields).toEqual([
      {
        field: 'workspace_id',
        message:
          'cannot change from "ws1" to "ws2" once provisioned; delete this ConfigMap to remove workspace ws1, then create one for ws2',
      },
    ]);
    expect(w.claims.workspaceOf(key)).toBe('ws1');
    expect(w.calls).toEqual([]);
  });
});

describe('WorkspaceReconciler: claims', () => {
  it('a second ConfigMap claiming a provisioned workspace_id: Conflict, a Warning Event, no step, no finalizer', async () => {
    const w = world();
    const owner = await w.provisioned();
    const second = w.put('w2', workspaceDoc('ws1'));
    expect(await w.reconciler.reconcile(second)).toEqual({});
    expect(w.status(second)).toMatchObject({
      phase: 'Conflict',
      workspaceId: 'ws1',
      owner: false,
      steps: {},
      lastError: `workspace_id "ws1" is already claimed by ConfigMap ${owner}`,
    });
    expect(w.readyCondition(second)).toMatchObject({ status: 'False', reason: 'WorkspaceClaimConflict' });
    expect(w.object(second)?.metadata.finalizers).toEqual([]);
    expect(w.events.map((e) => `${e.on} ${e.type} ${e.reason}`)).toEqual(['w2 Warning WorkspaceClaimConflict']);
    expect(w.calls).toEqual([]);
  });

  it("the owner's deletion hands the workspace over to the next claimant instead of tearing it down", async () => {
    const w = world();
    const owner = await w.provisioned();
    const second = w.put('w2', workspaceDoc('ws1'));
    await w.reconciler.reconcile(second);
    w.events.length = 0;
    w.markDeleted(owner);

    expect(await w.reconciler.reconcile(owner)).toEqual({});
    expect(w.calls).toEqual([]);
    expect(w.enqueued).toEqual([second]);
    expect(w.object(owner)).toBeUndefined(); // finalizer released: the apiserver removed it
    expect(w.events).toEqual([]);
  });
});

describe('WorkspaceReconciler: Flyte not selected', () => {
  it('a workspace that never provisioned: Disabled and Ready, no finalizer, no Event, no step', async () => {
    const w = world();
    const key = w.put('w1', workspaceDoc('ws1', { services: ['sagemaker'] }));
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(1);
    expect(w.kube.applies[0]?.metadata.finalizers).toBeUndefined();
    expect(w.status(key)).toMatchObject({ phase: 'Disabled', workspaceId: 'ws1', steps: {} });
    expect(w.readyCondition(key)).toMatchObject({ status: 'True', reason: 'FlyteNotSelected' });
    expect(w.events).toEqual([]);
    expect(w.calls).toEqual([]);
  });

  it('a provisioned workspace: torn down in reverse order, finalizer released, a TornDown Event', async () => {
    const w = world();
    const key = await w.provisioned();
    w.put('w1', workspaceDoc('ws1', { services: ['sagemaker'] }));
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.calls).toEqual(['teardown flyte', 'teardown iam', 'teardown kubernetes']);
    expect(w.status(key)).toMatchObject({ phase: 'Disabled', owner: false, workspaceId: 'ws1' });
    expect(w.readyCondition(key)).toMatchObject({
      reason: 'TornDown',
      message: 'flyte removed from services: cleaned up',
    });
    expect(w.object(key)?.metadata.finalizers).toEqual([]);
    expect(w.events).toEqual([
      { on: 'w1', type: 'Normal', reason: 'TornDown', message: 'flyte removed from services: cleaned up' },
    ]);
  });

  it('a ConfigMap that lost its workspace label is torn down like a disabled one', async () => {
    const w = world();
    const key = await w.provisioned();
    (w.object(key) as KubeObject).metadata.labels = {};
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.calls).toEqual(['teardown flyte', 'teardown iam', 'teardown kubernetes']);
    expect(w.readyCondition(key)?.message).toBe('ConfigMap no longer labelled as a workspace: cleaned up');
    expect(w.object(key)?.metadata.finalizers).toEqual([]);
  });
});

describe('WorkspaceReconciler: finalize', () => {
  it('deletion tears everything down, then releases the finalizer with a TornDown Event', async () => {
    const w = world();
    const key = await w.provisioned();
    w.markDeleted(key);
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.calls).toEqual(['teardown flyte', 'teardown iam', 'teardown kubernetes']);
    expect(w.steps.flyte.tornDown[0]).toMatchObject({ workspaceId: 'ws1', force: true, dryRun: false });
    expect(w.kube.applies).toHaveLength(1);
    expect(w.kube.applies[0]?.metadata.finalizers).toBeUndefined();
    expect(w.object(key)).toBeUndefined();
    expect(w.events).toEqual([
      { on: 'w1', type: 'Normal', reason: 'TornDown', message: 'ConfigMap deleted: cleaned up' },
    ]);
    // Gone: the next reconcile finds nothing to do.
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.kube.applies).toHaveLength(1);
  });

  it('a failed teardown keeps the finalizer, says why, and is retried until it succeeds', async () => {
    const w = world();
    const key = await w.provisioned();
    w.markDeleted(key);
    w.steps.flyte.teardownWith = async () => failed('FlyteUnavailable', 'connection refused', true);
    const message = 'ConfigMap deleted: flyte: connection refused';
    await expect(w.reconciler.reconcile(key)).rejects.toThrow(new RetryableReconcileError(message));
    expect(w.status(key)).toMatchObject({ phase: 'Deleting', owner: true, lastError: message });
    expect(w.readyCondition(key)).toMatchObject({ reason: 'TearingDown', message });
    expect(w.object(key)?.metadata.finalizers).toEqual([FINALIZER]);
    expect(w.events).toEqual([{ on: 'w1', type: 'Warning', reason: 'FlyteUnavailable', message }]);

    w.steps.flyte.teardownWith = async () => deleted();
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.object(key)).toBeUndefined();
    expect(w.events.map((e) => e.reason)).toEqual(['FlyteUnavailable', 'TornDown']);
  });

  it('a teardown still running in its lane: Deleting, waiting, no Event, and the next step waits for it', async () => {
    const w = world({ lanes: true });
    const key = await w.provisioned();
    w.markDeleted(key);
    const flyteGone = gate();
    w.steps.flyte.teardownWith = flyteGone.answer;

    expect(await w.reconciler.reconcile(key)).toEqual({ waiting: true });
    expect(w.calls).toEqual(['teardown flyte']);
    expect(w.status(key)?.phase).toBe('Deleting');
    expect(w.readyCondition(key)).toMatchObject({
      reason: 'TearingDown',
      message: 'ConfigMap deleted: flyte: waiting for FlyteAdmin to answer',
    });
    expect(w.object(key)?.metadata.finalizers).toEqual([FINALIZER]);
    expect(w.events).toEqual([]);

    flyteGone.release(deleted());
    await flush();
    expect(w.askedAgain).toEqual([key]);
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.calls).toEqual(['teardown flyte', 'teardown iam', 'teardown kubernetes']);
    expect(w.object(key)).toBeUndefined();
    expect(w.events.map((e) => e.reason)).toEqual(['TornDown']);
  });
});

describe('WorkspaceReconciler: rerun requests', () => {
  it('a new token forces every step to read live state, and is echoed once handled; the repeat is not forced', async () => {
    const w = world();
    const key = await w.provisioned();
    w.put('w1', workspaceDoc('ws1'), { [RECONCILE_REQUEST_ANNOTATION]: 't1' });
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.steps.iam.ensured.map((c) => c.force)).toEqual([true]);
    expect(w.status(key)?.lastHandledReconcileAt).toBe('t1');

    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.steps.iam.ensured.map((c) => c.force)).toEqual([true, false]);
  });

  it('with a step still in its lane, the token is echoed only once every step has answered for it', async () => {
    const w = world({ lanes: true });
    const key = await w.provisioned();
    const iamAnswer = gate();
    w.steps.iam.ensureWith = iamAnswer.answer;
    w.put('w1', workspaceDoc('ws1'), { [RECONCILE_REQUEST_ANNOTATION]: 't1' });
    expect(await w.reconciler.reconcile(key)).toEqual({ waiting: true });
    expect(w.status(key)?.lastHandledReconcileAt).toBeUndefined();
    expect(w.status(key)?.steps.iam?.state).toBe('Progressing'); // a forced pass shows no old result

    iamAnswer.release(ready(0, { roleArn: ROLE_ARN }));
    await flush();
    expect(await w.reconciler.reconcile(key)).toEqual({});
    expect(w.status(key)?.lastHandledReconcileAt).toBe('t1');
    expect(w.steps.iam.ensured).toHaveLength(1);
  });

  it('an invalid or conflicting workspace echoes the token too: the request was handled, not Ready', async () => {
    const w = world();
    const invalid = w.put('w1', workspaceDoc('ws1', { data_bucket: 'elsewhere' }), {
      [RECONCILE_REQUEST_ANNOTATION]: 't1',
    });
    await w.reconciler.reconcile(invalid);
    expect(w.status(invalid)).toMatchObject({ phase: 'Invalid', lastHandledReconcileAt: 't1' });

    await w.provisioned('w2', workspaceDoc('ws2'));
    const conflict = w.put('w3', workspaceDoc('ws2'), { [RECONCILE_REQUEST_ANNOTATION]: 't2' });
    await w.reconciler.reconcile(conflict);
    expect(w.status(conflict)).toMatchObject({ phase: 'Conflict', lastHandledReconcileAt: 't2' });
  });
});
