// Workspace fixtures: the workspace.json document, the source ConfigMap that carries it, and the status the
// controller writes back. One set for the tests, `npm run local` and the benchmarks.
import type { HttpKubeApi } from '../src/adapters/kubernetes.js';
import { STATUS_ANNOTATION } from '../src/config/config.js';
import type { KubeObject } from '../src/kinds/kubernetes.js';
import { parseStatus, type WorkspaceStatus } from '../src/reconcile/status.js';

/** The label the platform's ConfigMaps carry (manifests/example-workspace.yaml). */
export const WORKSPACE_LABELS = { app: 'workspace-config' };
/** The field manager of whoever writes workspace documents: the platform, not the controller. */
export const PLATFORM_FIELD_MANAGER = 'workspace-platform';

/** A valid document for `id`: an owner and a contributor, Flyte on, and a service the controller ignores. */
export function workspaceDoc(id: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    workspace_id: id,
    workspace_name: `Workspace ${id}`,
    users: [
      { user_id: 'u1', email: `owner-${id}@example.com`, role: 'owner' },
      { user_id: 'u2', email: `dev-${id}@example.com`, role: 'contributor' },
    ],
    data_bucket: `${id}-data`,
    services: [{ service_type: 'flyte', config: {} }, 'sagemaker'],
    ...overrides,
  };
}

/** The source ConfigMap for a document (a string is used verbatim, so tests can send broken JSON). */
export function workspaceConfigMap(
  namespace: string,
  name: string,
  doc: unknown,
  annotations?: Record<string, string>,
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels: { ...WORKSPACE_LABELS }, ...(annotations ? { annotations } : {}) },
    data: { 'workspace.json': typeof doc === 'string' ? doc : JSON.stringify(doc) },
  };
}

/** Where workspaces live: an admin client and the source namespace the controller watches. */
export interface WorkspaceSource {
  admin: HttpKubeApi;
  sourceNamespace: string;
}

/** Creates or updates a workspace ConfigMap the way the platform does (server-side apply). */
export async function putWorkspace(
  at: WorkspaceSource,
  name: string,
  doc: unknown,
  annotations: Record<string, string> = {},
): Promise<void> {
  await at.admin.apply(workspaceConfigMap(at.sourceNamespace, name, doc, annotations), {
    fieldManager: PLATFORM_FIELD_MANAGER,
  });
}

/** The status the controller recorded on a workspace ConfigMap, if any. */
export async function workspaceStatus(at: WorkspaceSource, name: string): Promise<WorkspaceStatus | undefined> {
  const cm = await at.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: at.sourceNamespace, name });
  return parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION]);
}
