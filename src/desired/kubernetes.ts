// Desired Kubernetes objects for one workspace. Pure: same spec + config → same objects, no I/O.
import { createHash } from 'node:crypto';
import { type ControllerConfig, MANAGED_BY_LABEL, SOURCE_ANNOTATION, WORKSPACE_ID_LABEL } from '../config/config.js';
import type { KubeObject } from '../kinds/kubernetes.js';
import type { WorkspaceNames } from '../spec/names.js';
import type { WorkspaceSpec, WorkspaceUser } from '../spec/workspace.js';
import { workspaceContext, workspaceContextData } from './context.js';

export const DOMAIN_LABEL = 'workspaces.flyte.org/domain';
export const ROLE_LABEL = 'workspaces.flyte.org/role';
export const IRSA_ANNOTATION = 'eks.amazonaws.com/role-arn';

export function managedLabels(
  cfg: Pick<ControllerConfig, 'fieldManager'>,
  workspaceId: string,
): Record<string, string> {
  return {
    [MANAGED_BY_LABEL]: cfg.fieldManager,
    'app.kubernetes.io/name': 'flyte-workspace',
    'app.kubernetes.io/part-of': 'flyte',
    'app.kubernetes.io/instance': workspaceId,
    [WORKSPACE_ID_LABEL]: workspaceId,
  };
}

/** Selector matching everything this controller manages for one workspace. */
export function workspaceSelector(cfg: Pick<ControllerConfig, 'fieldManager'>, workspaceId: string): string {
  return `${MANAGED_BY_LABEL}=${cfg.fieldManager},${WORKSPACE_ID_LABEL}=${workspaceId}`;
}

/**
 * What the Kubernetes objects are made from: names, tiers, RBAC, the namespaces the NetworkPolicy lets
 * through, whether IAM is on (the IRSA annotation) and the users' Flyte endpoint (the context ConfigMap).
 */
export type KubernetesObjectsConfig = Pick<
  ControllerConfig,
  | 'fieldManager'
  | 'names'
  | 'tiers'
  | 'defaultTier'
  | 'rbac'
  | 'flyteSystemNamespace'
  | 'dnsNamespace'
  | 'aws'
  | 'flyte'
>;

export interface DesiredKubernetesInput {
  cfg: KubernetesObjectsConfig;
  spec: WorkspaceSpec;
  names: WorkspaceNames;
  /** `namespace/name` of the ConfigMap that owns the workspace. */
  source: string;
  /** Role ARN for the runner ServiceAccount (IRSA annotation). */
  roleArn: string;
}

/** Objects in creation order: namespaces first, then what lives in them. */
export function desiredKubernetesObjects(input: DesiredKubernetesInput): KubeObject[] {
  const { cfg, spec, names, source, roleArn } = input;
  const id = spec.workspaceId;
  const labels = managedLabels(cfg, id);
  const objects: KubeObject[] = [];
  const domainsByNamespace = new Map<string, string[]>();
  for (const [domain, ns] of names.namespaceByDomain) {
    domainsByNamespace.set(ns, [...(domainsByNamespace.get(ns) ?? []), domain]);
  }

  for (const [ns, domains] of domainsByNamespace) {
    const nsLabels: Record<string, string> = { ...labels, 'workspace-id': id, 'flyte.org/tenant': id };
    if (cfg.names.namespacePerDomain) nsLabels[DOMAIN_LABEL] = domains[0] as string;
    objects.push({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: nsLabels, annotations: { [SOURCE_ANNOTATION]: source } },
    });
  }

  const tier = cfg.tiers[spec.tier] ?? cfg.tiers[cfg.defaultTier];
  for (const [ns, domains] of domainsByNamespace) {
    objects.push({
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: { name: names.resourceQuota, namespace: ns, labels },
      spec: { hard: { ...tier } },
    });
    objects.push(networkPolicy(cfg, names.networkPolicy, ns, labels));
    const saAnnotations: Record<string, string> = cfg.aws.enabled ? { [IRSA_ANNOTATION]: roleArn } : {};
    objects.push({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: names.serviceAccount, namespace: ns, labels, annotations: saAnnotations },
    });
    // Before the bindings: users get access to a namespace that already holds their context.
    objects.push(contextConfigMap(cfg, spec, ns, domains, labels));
    for (const user of spec.users) {
      if (!userBoundInNamespace(cfg, user, domains)) continue;
      objects.push(roleBinding(cfg, user, ns, labels));
    }
  }
  return objects;
}

/**
 * The users' Flyte client configuration. Its default domain is the namespace's own domain with one
 * namespace per domain, else the first of the workspace's domains (Flyte's order: development first).
 */
function contextConfigMap(
  cfg: Pick<ControllerConfig, 'names' | 'flyte'>,
  spec: WorkspaceSpec,
  ns: string,
  domains: string[],
  labels: Record<string, string>,
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: cfg.names.contextConfigMap,
      namespace: ns,
      labels: { ...labels, 'app.kubernetes.io/component': 'workspace-context' },
    },
    data: workspaceContextData(workspaceContext(cfg, spec, domains[0] as string)),
  };
}

/** Contributors are bound only where a domain of the namespace allows them (per-domain mode); owners everywhere. */
function userBoundInNamespace(
  cfg: Pick<ControllerConfig, 'names' | 'rbac'>,
  user: WorkspaceUser,
  domains: string[],
): boolean {
  if (user.role === 'owner' || !cfg.names.namespacePerDomain) return true;
  return domains.some((d) => cfg.rbac.contributorDomains.includes(d));
}

export function roleBindingName(role: string, subject: string): string {
  // Name derived from role + subject: a role change becomes create-new + prune-old, because
  // roleRef is immutable and cannot be updated in place.
  const hash = createHash('sha256').update(subject.toLowerCase()).digest('hex').slice(0, 10);
  return `workspace-${role}-${hash}`;
}

function roleBinding(
  cfg: Pick<ControllerConfig, 'names' | 'rbac'>,
  user: WorkspaceUser,
  ns: string,
  labels: Record<string, string>,
): KubeObject {
  const subject = cfg.rbac.subjectField === 'email' ? user.email : user.userId;
  const clusterRole = user.role === 'owner' ? cfg.names.ownerClusterRole : cfg.names.contributorClusterRole;
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: roleBindingName(user.role, subject),
      namespace: ns,
      labels: { ...labels, [ROLE_LABEL]: user.role },
      annotations: { 'workspaces.flyte.org/user-id': user.userId, 'workspaces.flyte.org/email': user.email },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: subject }],
  };
}

function networkPolicy(
  cfg: Pick<ControllerConfig, 'flyteSystemNamespace' | 'dnsNamespace'>,
  name: string,
  ns: string,
  labels: Record<string, string>,
): KubeObject {
  const nsSelector = (n: string) => ({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': n } } });
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns, labels },
    spec: {
      podSelector: {},
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [nsSelector(cfg.flyteSystemNamespace)] }],
      egress: [
        { to: [nsSelector(cfg.flyteSystemNamespace)] },
        {
          to: [nsSelector(cfg.dnsNamespace)],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
        { ports: [{ protocol: 'TCP', port: 443 }] },
      ],
    },
  };
}
