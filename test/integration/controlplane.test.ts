// The test harness itself: the shared control plane is real (RBAC, escalation checks, the namespace
// controller and ValidatingAdmissionPolicy all enforce), and the controller identity gets exactly the
// permissions of manifests/*.yaml — no more (system:masters would hide RBAC bugs), no less.
import {
  ApiException,
  AuthorizationV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1Namespace,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeError, kubeConfigFor, statusOf, uniqueName, waitFor } from '../support/kube.js';

const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'flyte-workspace-controller' };
const VAP_MESSAGE = /the workspace controller may only change or delete objects it manages/;

let adminKc: KubeConfig;
let admin: CoreV1Api;
let controller: CoreV1Api;
let controllerRbac: RbacAuthorizationV1Api;

beforeAll(() => {
  adminKc = kubeConfigFor('admin');
  admin = adminKc.makeApiClient(CoreV1Api);
  const controllerKc = kubeConfigFor('controller');
  controller = controllerKc.makeApiClient(CoreV1Api);
  controllerRbac = controllerKc.makeApiClient(RbacAuthorizationV1Api);
});

/** Runs `fn`, expecting the API server to reject it with `code`; returns the error text. */
async function rejection(fn: () => Promise<unknown>, code: number): Promise<string> {
  let result: unknown;
  try {
    result = await fn();
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    const text = describeError(e);
    if (e.code !== code) throw new Error(`expected HTTP ${code}, got ${text}`);
    return text;
  }
  throw new Error(`expected HTTP ${code}, but the request succeeded: ${JSON.stringify(result).slice(0, 300)}`);
}

function namespace(name: string, labels: Record<string, string> = {}): V1Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

async function gone(name: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      try {
        const ns = await admin.readNamespace({ name });
        throw new Error(`still there, phase ${ns.status?.phase}`);
      } catch (e) {
        if (statusOf(e) === 404) return true;
        throw e;
      }
    },
    { timeoutMs, message: `namespace ${name} to be deleted (404)` },
  );
}

describe('control plane', () => {
  it('admin creates a namespace', async () => {
    const name = uniqueName('cp-admin');
    await admin.createNamespace({ body: namespace(name) });
    const ns = await admin.readNamespace({ name });
    expect(ns.metadata?.name).toBe(name);
    expect(ns.status?.phase).toBe('Active');
  });

  it('has the controller ServiceAccount and the workspace roles from manifests/', async () => {
    const sa = await admin.readNamespacedServiceAccount({
      name: 'flyte-workspace-controller',
      namespace: 'flyte-workspace-controller',
    });
    expect(sa.metadata?.name).toBe('flyte-workspace-controller');
    const rbac = adminKc.makeApiClient(RbacAuthorizationV1Api);
    for (const name of ['flyte-workspace-owner', 'flyte-workspace-contributor', 'flyte-workspace-controller']) {
      expect((await rbac.readClusterRole({ name })).metadata?.name).toBe(name);
    }
  });
});

describe('controller identity is least-privilege', () => {
  it('cannot read a Secret in kube-system', async () => {
    const text = await rejection(
      () => controller.readNamespacedSecret({ name: 'anything', namespace: 'kube-system' }),
      403,
    );
    expect(text).toContain('system:serviceaccount:flyte-workspace-controller:flyte-workspace-controller');
    expect(text).toMatch(/cannot get resource "secrets"/);
  });

  it('cannot create a ClusterRoleBinding to cluster-admin', async () => {
    const text = await rejection(
      () =>
        controllerRbac.createClusterRoleBinding({
          body: {
            apiVersion: 'rbac.authorization.k8s.io/v1',
            kind: 'ClusterRoleBinding',
            metadata: { name: uniqueName('escalate') },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
            subjects: [
              { kind: 'ServiceAccount', name: 'flyte-workspace-controller', namespace: 'flyte-workspace-controller' },
            ],
          },
        }),
      403,
    );
    expect(text).toMatch(/cannot create resource "clusterrolebindings"/);
  });

  it('may create a namespace and bind flyte-workspace-owner there without holding its permissions, but not cluster-admin', async () => {
    const name = uniqueName('cp-ctrl');
    await controller.createNamespace({ body: namespace(name, MANAGED_BY) });

    // Binding the workspace role works only through `bind` on its name: the controller holds none of it.
    const review = await kubeConfigFor('controller')
      .makeApiClient(AuthorizationV1Api)
      .createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { namespace: name, verb: 'get', resource: 'secrets' } } },
      });
    expect(review.status?.allowed).toBe(false);

    const binding = (role: string, bindingName: string) => ({
      namespace: name,
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: bindingName, namespace: name, labels: MANAGED_BY },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'someone@example.com' }],
      },
    });
    const created = await controllerRbac.createNamespacedRoleBinding(binding('flyte-workspace-owner', 'owner'));
    expect(created.roleRef.name).toBe('flyte-workspace-owner');

    // RBAC escalation prevention, not a missing `create rolebindings` verb, is what stops this one.
    const text = await rejection(
      () => controllerRbac.createNamespacedRoleBinding(binding('cluster-admin', 'admin')),
      403,
    );
    expect(text).toMatch(/attempting to grant RBAC permissions not currently held/);
  });
});

// Each deletion waits out the namespace controller's fixed 5 s grace period, so these run concurrently
// (context-bound `expect`).
describe.concurrent('namespace deletion', () => {
  it('kube-controller-manager removes a namespace with content until it is gone (404)', async ({ expect }) => {
    const name = uniqueName('cp-del');
    await admin.createNamespace({ body: namespace(name) });
    await admin.createNamespacedConfigMap({
      namespace: name,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'content' }, data: { a: 'b' } },
    });
    await admin.deleteNamespace({ name });
    await gone(name);
    const left = await admin.listNamespacedConfigMap({ namespace: name });
    expect(left.items).toEqual([]);
  });

  it('ValidatingAdmissionPolicy denies the controller deleting a namespace without the managed-by label', async ({
    expect,
  }) => {
    const name = uniqueName('cp-vap');
    await admin.createNamespace({ body: namespace(name, { 'app.kubernetes.io/managed-by': 'someone-else' }) });
    const text = await rejection(() => controller.deleteNamespace({ name }), 403);
    expect(text).toMatch(VAP_MESSAGE);
    const ns = await admin.readNamespace({ name });
    expect(ns.metadata?.deletionTimestamp).toBeUndefined();
    expect(ns.status?.phase).toBe('Active');
    // The same delete by admin is not affected by the policy.
    await admin.deleteNamespace({ name });
    await gone(name);
  });

  it('ValidatingAdmissionPolicy lets the controller delete a namespace it manages', async () => {
    const name = uniqueName('cp-vap');
    await admin.createNamespace({ body: namespace(name, MANAGED_BY) });
    await controller.deleteNamespace({ name });
    await gone(name);
  });
});
