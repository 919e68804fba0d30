// Kubernetes helpers for whoever drives a control plane from outside the controller: the integration
// tests, `npm run local` and the benchmarks. No test framework here; test/support/kube.ts adds the
// vitest-bound defaults.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { inspect } from 'node:util';
import {
  ApiException,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  PatchStrategy,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import {
  CONTROLLER_NAMESPACE,
  CONTROLLER_SERVICE_ACCOUNT,
  credentialsOf,
  type Identity,
  type KubeConnection,
} from './controlplane.js';

export type { Identity, KubeConnection };
export { credentialsOf };

/**
 * A KubeConfig for one of the identities: `admin` (system:masters), `controller` (the controller's
 * ServiceAccount name and groups, so it gets exactly the RBAC in manifests/rbac.yaml) or `oncall` (a person
 * in group flyte-workspace-oncall, with only what manifests/oncall-rbac.yaml grants).
 */
export function kubeConfigFor(identity: Identity, conn: KubeConnection): KubeConfig {
  const { user, token } = credentialsOf(identity, conn);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fwc-test', server: conn.server, caData: conn.caData, skipTLSVerify: false }],
    users: [{ name: user, token }],
    contexts: [{ name: identity, cluster: 'fwc-test', user }],
    currentContext: identity,
  });
  return kc;
}

/** Server-side applies every document of a YAML file (fieldManager `test-harness`, forced). */
export async function applyManifestFile(kc: KubeConfig, path: string): Promise<KubernetesObject[]> {
  return applyDocs(kc, manifestDocs(await readFile(path, 'utf8'), path), path);
}

/** The documents of a YAML text; `source` names it in errors. Empty documents are skipped. */
export function manifestDocs(text: string, source: string): KubernetesObject[] {
  try {
    // loadAllYaml throws on empty documents (a trailing `---`, a comments-only block), so drop those first.
    const chunks = text
      .split(/^---[ \t]*$/m)
      .filter((c) => c.split('\n').some((l) => l.trim() && !l.trim().startsWith('#')));
    return chunks.flatMap((c) => loadAllYaml(c) as KubernetesObject[]);
  } catch (e) {
    throw new Error(`${source}: cannot parse YAML: ${(e as Error).message}`);
  }
}

/** Server-side applies `docs` in order (forced); `source` names them in errors. */
export async function applyDocs(
  kc: KubeConfig,
  docs: KubernetesObject[],
  source: string,
  fieldManager = 'test-harness',
): Promise<KubernetesObject[]> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const applied: KubernetesObject[] = [];
  for (const doc of docs) {
    const what = `${doc.kind} ${doc.metadata?.namespace ? `${doc.metadata.namespace}/` : ''}${doc.metadata?.name}`;
    try {
      applied.push(await api.patch(doc, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply));
    } catch (e) {
      throw new Error(`${source}: applying ${what} failed: ${describeError(e)}`);
    }
  }
  return applied;
}

/** HTTP status of a client-node error, or undefined if it is not an API error. */
export function statusOf(e: unknown): number | undefined {
  return e instanceof ApiException ? e.code : undefined;
}

/** Short description of a client-node error, with the server's Status message when there is one. */
export function describeError(e: unknown): string {
  if (e instanceof ApiException) {
    const body = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    const msg = (body as { message?: string } | undefined)?.message ?? inspect(body);
    return `HTTP ${e.code}: ${msg}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** A DNS-1123 label `<prefix>-<8 random chars>`, unique across parallel workers and runs. */
export function uniqueName(prefix: string): string {
  const suffix = BigInt(`0x${randomBytes(6).toString('hex')}`)
    .toString(36)
    .padStart(8, '0')
    .slice(-8);
  const name = `${prefix}-${suffix}`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 40) {
    throw new Error(`uniqueName: prefix ${JSON.stringify(prefix)} must be a short lowercase DNS label`);
  }
  return name;
}

export interface WaitOptions {
  /** Default 30 s. */
  timeoutMs?: number;
  /** Default 200 ms. */
  intervalMs?: number;
  /** What is being waited for (used in the timeout error). */
  message?: string;
}

/**
 * Polls `fn` until it returns a value that is not undefined/null/false, and returns that value.
 * Errors thrown by `fn` count as "not yet" (e.g. a 404 before an object exists). On timeout, throws with
 * the last value or error observed.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const intervalMs = opts.intervalMs ?? 200;
  const deadline = Date.now() + timeoutMs;
  let last: string = 'nothing (fn never completed)';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v as T;
      last = inspect(v);
    } catch (e) {
      last = `error: ${describeError(e)}`;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${opts.message ?? 'condition'}; last observed: ${last}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Lets the controller read and annotate workspace ConfigMaps in `ns`, the way manifests/rbac.yaml does
 * for workspace-platform.
 */
export async function bindSourceNamespace(kc: KubeConfig, ns: string): Promise<void> {
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: {
        name: 'flyte-workspace-controller-source',
        namespace: ns,
        labels: { 'app.kubernetes.io/name': 'flyte-workspace-controller' },
      },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'flyte-workspace-controller-source',
      },
      subjects: [{ kind: 'ServiceAccount', name: CONTROLLER_SERVICE_ACCOUNT, namespace: CONTROLLER_NAMESPACE }],
    },
  });
}
