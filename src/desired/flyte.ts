// Desired FlyteAdmin state of a workspace: the project and, per domain, the matchable attributes we own
// (WORKFLOW_EXECUTION_CONFIG and CLUSTER_RESOURCE). Pure: no I/O, deterministic for equal inputs.
// Also the semantic comparison helpers the Flyte step uses to decide whether a write is needed.
import { createHash } from 'node:crypto';
import { clone, create, equals, toJson } from '@bufbuild/protobuf';
import { type ControllerConfig, MANAGED_BY_LABEL, type TierQuota, WORKSPACE_ID_LABEL } from '../config/config.js';
import {
  MatchableResource,
  type MatchingAttributes,
  MatchingAttributesSchema,
} from '../gen/flyteidl/admin/matchable_resource_pb.js';
import { type Project, Project_ProjectState } from '../gen/flyteidl/admin/project_pb.js';
import type { WorkspaceNames } from '../spec/names.js';
import { stableStringify, type WorkspaceSpec } from '../spec/workspace.js';

/** FlyteAdmin limits (flyteadmin/pkg/manager/impl/validation): Go `len`, i.e. UTF-8 bytes. */
export const FLYTE_LIMITS = {
  projectNameBytes: 64,
  projectDescriptionBytes: 300,
  labels: 16,
} as const;

export const PROJECT_NAME_PREFIX = 'Flyte - ';

/** The attribute types the controller owns per project-domain, in the order they are applied. */
export const MANAGED_RESOURCE_TYPES = [
  MatchableResource.WORKFLOW_EXECUTION_CONFIG,
  MatchableResource.CLUSTER_RESOURCE,
] as const;
export type ManagedResourceType = (typeof MANAGED_RESOURCE_TYPES)[number];

export interface DesiredProject {
  id: string;
  name: string;
  description: string;
  labels: Record<string, string>;
  state: Project_ProjectState.ACTIVE;
}

export interface DesiredDomainAttributes {
  domain: string;
  resourceType: ManagedResourceType;
  attributes: MatchingAttributes;
}

export interface DesiredFlyteState {
  project: DesiredProject;
  domains: string[];
  /** One entry per (domain, resource type), domains in the given order, types in MANAGED_RESOURCE_TYPES order. */
  attributes: DesiredDomainAttributes[];
}

export interface DesiredFlyteInput {
  cfg: Pick<ControllerConfig, 'fieldManager' | 'tiers' | 'defaultTier'>;
  spec: WorkspaceSpec;
  names: WorkspaceNames;
  /** Role ARN for `defaultIamRole` (IAM's answer, or the computed one before IAM ran). */
  roleArn: string;
  /** Flyte domain ids the attributes are set for. */
  domains: string[];
}

export function desiredFlyteState(input: DesiredFlyteInput): DesiredFlyteState {
  const { cfg, spec, names, roleArn, domains } = input;
  const project: DesiredProject = {
    id: names.flyteProject,
    name: projectDisplayName(spec.workspaceName),
    description: projectDescription(spec),
    labels: projectLabels(cfg, spec.workspaceId),
    state: Project_ProjectState.ACTIVE,
  };
  const tier = cfg.tiers[spec.tier] ?? cfg.tiers[cfg.defaultTier];
  const attributes: DesiredDomainAttributes[] = [];
  for (const domain of domains) {
    attributes.push({
      domain,
      resourceType: MatchableResource.WORKFLOW_EXECUTION_CONFIG,
      attributes: workflowExecutionConfig(spec, names),
    });
    attributes.push({
      domain,
      resourceType: MatchableResource.CLUSTER_RESOURCE,
      attributes: clusterResourceAttributes(tier, spec.tier, roleArn),
    });
  }
  return { project, domains: [...domains], attributes };
}

/** `Flyte - <workspace name>`, cut to FlyteAdmin's 64-byte limit without splitting a character. */
export function projectDisplayName(workspaceName: string): string {
  return truncateUtf8(`${PROJECT_NAME_PREFIX}${workspaceName}`, FLYTE_LIMITS.projectNameBytes).trimEnd();
}

function projectDescription(spec: WorkspaceSpec): string {
  // Name last, so a long name is what gets cut, never the ownership note.
  const text = `Managed by flyte-workspace-controller for workspace ${spec.workspaceId}; changes made here are overwritten. Workspace: ${spec.workspaceName}`;
  return truncateUtf8(text, FLYTE_LIMITS.projectDescriptionBytes).trimEnd();
}

/** Labels that identify the project as ours; exactly these two, see ownsProject(). */
export function projectLabels(
  cfg: Pick<ControllerConfig, 'fieldManager'>,
  workspaceId: string,
): Record<string, string> {
  return { [MANAGED_BY_LABEL]: cfg.fieldManager, [WORKSPACE_ID_LABEL]: workspaceId };
}

/**
 * Longest prefix of `s` whose UTF-8 encoding fits in `maxBytes`, cut on a code point boundary (so a
 * multi-byte character or a surrogate pair is either kept whole or dropped whole).
 */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  let bytes = 0;
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > maxBytes) break;
    bytes += n;
    out += ch;
  }
  return out;
}

function workflowExecutionConfig(spec: WorkspaceSpec, names: WorkspaceNames): MatchingAttributes {
  return create(MatchingAttributesSchema, {
    target: {
      case: 'workflowExecutionConfig',
      value: {
        securityContext: { runAs: { k8sServiceAccount: names.serviceAccount } },
        rawOutputDataConfig: { outputLocationPrefix: `s3://${spec.dataBucket}/flyte/raw-data` },
        envs: {
          values: [
            { key: 'WORKSPACE_ID', value: spec.workspaceId },
            { key: 'WORKSPACE_DATA_BUCKET', value: spec.dataBucket },
          ],
        },
      },
    },
  });
}

function clusterResourceAttributes(tier: TierQuota | undefined, tierName: string, roleArn: string): MatchingAttributes {
  const attributes: Record<string, string> = {};
  const quota = tier ?? ({} as TierQuota);
  // Raw tier entries first (sorted, first key wins on a collision), then the well-known Flyte names.
  for (const resource of Object.keys(quota).sort()) {
    const key = quotaTemplateKey(resource);
    if (!(key in attributes)) attributes[key] = quota[resource] as string;
  }
  const cpu = quota['limits.cpu'] ?? quota['requests.cpu'];
  const memory = quota['limits.memory'] ?? quota['requests.memory'];
  if (cpu !== undefined) attributes.projectQuotaCpu = cpu;
  if (memory !== undefined) attributes.projectQuotaMemory = memory;
  attributes.workspaceTier = tierName;
  attributes.defaultIamRole = roleArn;
  return create(MatchingAttributesSchema, { target: { case: 'clusterResourceAttributes', value: { attributes } } });
}

/**
 * Cluster-resource template key for a ResourceQuota resource name: `quota` + camel case of its parts,
 * e.g. `limits.cpu` → `quotaLimitsCpu`, `requests.nvidia.com/gpu` → `quotaRequestsNvidiaComGpu`.
 */
export function quotaTemplateKey(resource: string): string {
  const parts = resource.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return `quota${parts.map((p) => p.charAt(0).toUpperCase() + p.slice(1).toLowerCase()).join('')}`;
}

// ---- Ownership and comparison -------------------------------------------------------------------

/** A project is ours only when it carries both our managed-by label and this workspace's id label. */
export function ownsProject(
  project: Project,
  cfg: Pick<ControllerConfig, 'fieldManager'>,
  workspaceId: string,
): boolean {
  const labels = project.labels?.values ?? {};
  return labels[MANAGED_BY_LABEL] === cfg.fieldManager && labels[WORKSPACE_ID_LABEL] === workspaceId;
}

/** Fields of the live project that differ from the desired one (empty = converged). */
export function projectDiff(live: Project, desired: DesiredProject): string[] {
  const diffs: string[] = [];
  if (live.name !== desired.name) diffs.push('name');
  if (live.description !== desired.description) diffs.push('description');
  if (!sameStringMap(live.labels?.values ?? {}, desired.labels)) diffs.push('labels');
  if (live.state !== desired.state) diffs.push('state');
  return diffs;
}

function sameStringMap(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/**
 * Canonical form for comparison: the order of env vars does not matter to Flyte, so they are sorted;
 * maps are compared by content anyway. Returns a new message.
 */
export function normalizeAttributes(m: MatchingAttributes): MatchingAttributes {
  const copy = clone(MatchingAttributesSchema, m);
  if (copy.target.case === 'workflowExecutionConfig') {
    const wec = copy.target.value;
    if (wec.envs) {
      wec.envs.values.sort((x, y) => cmp(x.key, y.key) || cmp(x.value, y.value));
    }
  }
  return copy;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Semantic equality of two attribute sets (undefined = no row). */
export function attributesEqual(a: MatchingAttributes | undefined, b: MatchingAttributes | undefined): boolean {
  if (!a || !b) return a === b;
  return equals(MatchingAttributesSchema, normalizeAttributes(a), normalizeAttributes(b));
}

/** Top-level fields of the attribute value that differ (for the plan's detail). */
export function attributesDiff(live: MatchingAttributes | undefined, desired: MatchingAttributes): string[] {
  if (!live || live.target.case !== desired.target.case) return [String(desired.target.case)];
  const a = attrJson(live);
  const b = attrJson(desired);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => stableStringify(a[k]) !== stableStringify(b[k])).map((k) => `${desired.target.case}.${k}`);
}

function attrJson(m: MatchingAttributes): Record<string, unknown> {
  const json = toJson(MatchingAttributesSchema, normalizeAttributes(m)) as Record<string, Record<string, unknown>>;
  return Object.values(json)[0] ?? {};
}

/** Stable hash of the whole desired Flyte state (cache key for "already converged"). */
export function flyteStateHash(state: DesiredFlyteState): string {
  const view = {
    project: state.project,
    domains: state.domains,
    attributes: state.attributes.map((a) => ({
      domain: a.domain,
      type: a.resourceType,
      value: toJson(MatchingAttributesSchema, normalizeAttributes(a.attributes)),
    })),
  };
  return createHash('sha256').update(stableStringify(view)).digest('hex').slice(0, 16);
}

export function resourceTypeName(t: MatchableResource): string {
  return MatchableResource[t] ?? String(t);
}

export function consoleUrl(cfg: Pick<ControllerConfig, 'flyte'>, projectId: string): string {
  return `${cfg.flyte.consoleBaseUrl.replace(/\/+$/, '')}/console/projects/${encodeURIComponent(projectId)}`;
}

// ---- Kubernetes label validation (what FlyteAdmin enforces on project labels) -------------------

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** k8s IsQualifiedName: optional DNS-1123 subdomain prefix (≤253) + "/" + name (≤63). */
export function isValidLabelKey(key: string): boolean {
  const parts = key.split('/');
  if (parts.length > 2) return false;
  const name = parts.length === 2 ? (parts[1] as string) : (parts[0] as string);
  if (parts.length === 2) {
    const prefix = parts[0] as string;
    if (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length > 0 && name.length <= 63 && QUALIFIED_NAME.test(name);
}

/** k8s IsValidLabelValue: empty, or ≤63 alphanumerics/-/_/. starting and ending alphanumeric. */
export function isValidLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

/** Problems FlyteAdmin would reject the labels for (empty = valid). */
export function labelProblems(labels: Record<string, string>): string[] {
  const problems: string[] = [];
  const entries = Object.entries(labels);
  if (entries.length > FLYTE_LIMITS.labels) problems.push(`labels map cannot exceed ${FLYTE_LIMITS.labels} entries`);
  for (const [k, v] of entries) {
    if (!isValidLabelKey(k)) problems.push(`invalid label key [${k}]`);
    if (!isValidLabelValue(v)) problems.push(`invalid label value [${v}]`);
  }
  return problems;
}
