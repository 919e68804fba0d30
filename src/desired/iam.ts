// The IAM role a workspace should have: one role per workspace (never a shared role whose trust policy
// grows with every workspace, Kubeflow's ACLSizePerRole pain), trusted by the workspace's runner
// ServiceAccount(s) only, with one inline policy scoped to the workspace's data bucket. Pure: no I/O.
import { createHash } from 'node:crypto';
import type { ControllerConfig, TrustStrategyName } from '../config/config.js';
import type { WorkspaceNames } from '../spec/names.js';
import type { WorkspaceSpec } from '../spec/workspace.js';
import { stableStringify } from '../spec/workspace.js';
import { roleArnFor } from './iam-arn.js';
import { canonicalPolicy, type PolicyDocument } from './iam-policy.js';

/** Tag keys on every role we create. The first two together are the ownership proof. */
export const IAM_TAG_MANAGED_BY = 'managed-by';
export const IAM_TAG_WORKSPACE_ID = 'workspace-id';
/** Informational: which bucket the role's inline policy grants (for people reading the console). */
export const IAM_TAG_DATA_BUCKET = 'data-bucket';
/** The one inline policy we own; any other inline policy on our role is drift and removed. */
export const WORKSPACE_DATA_POLICY = 'workspace-data';

export const IRSA_AUDIENCE = 'sts.amazonaws.com';
export const POD_IDENTITY_PRINCIPAL = 'pods.eks.amazonaws.com';

export interface DesiredIamRole {
  name: string;
  path: string;
  /** Computed ARN; the step reports the one IAM returns. */
  arn: string;
  description: string;
  maxSessionDuration: number;
  tags: Record<string, string>;
  permissionsBoundaryArn?: string;
  trustPolicy: PolicyDocument;
  inlinePolicies: Record<string, PolicyDocument>;
}

export interface TrustPolicyInput {
  cfg: Pick<ControllerConfig, 'aws'>;
  names: WorkspaceNames;
}

/** How workloads of the workspace obtain the role's credentials. */
export interface TrustPolicyStrategy {
  readonly name: TrustStrategyName;
  trustPolicy(input: TrustPolicyInput): PolicyDocument;
}

/**
 * IRSA: the cluster's OIDC provider vouches for a projected ServiceAccount token. Only the runner
 * ServiceAccount of each workspace namespace (one per domain in per-domain mode) may assume the role,
 * and only with the STS audience.
 */
export class IrsaTrustStrategy implements TrustPolicyStrategy {
  readonly name = 'irsa' as const;

  trustPolicy({ cfg, names }: TrustPolicyInput): PolicyDocument {
    const issuer = oidcIssuer(cfg.aws.oidcProviderArn);
    const subjects = names.namespaces.map((ns) => `system:serviceaccount:${ns}:${names.serviceAccount}`);
    return {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'WorkspaceRunnerIrsa',
          Effect: 'Allow',
          Principal: { Federated: cfg.aws.oidcProviderArn },
          Action: 'sts:AssumeRoleWithWebIdentity',
          Condition: {
            StringEquals: {
              [`${issuer}:sub`]: subjects.length === 1 ? (subjects[0] as string) : subjects,
              [`${issuer}:aud`]: IRSA_AUDIENCE,
            },
          },
        },
      ],
    };
  }
}

/**
 * EKS Pod Identity: the EKS auth service assumes the role for pods whose ServiceAccount has a pod
 * identity association (created outside this controller) and tags the session.
 */
export class PodIdentityTrustStrategy implements TrustPolicyStrategy {
  readonly name = 'pod-identity' as const;

  trustPolicy(): PolicyDocument {
    return {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'WorkspaceRunnerPodIdentity',
          Effect: 'Allow',
          Principal: { Service: POD_IDENTITY_PRINCIPAL },
          Action: ['sts:AssumeRole', 'sts:TagSession'],
        },
      ],
    };
  }
}

export function trustStrategyFor(name: TrustStrategyName): TrustPolicyStrategy {
  switch (name) {
    case 'irsa':
      return new IrsaTrustStrategy();
    case 'pod-identity':
      return new PodIdentityTrustStrategy();
    default:
      throw new Error(`unknown trust strategy "${String(name)}"`);
  }
}

/** `arn:aws:iam::123:oidc-provider/oidc.eks.region.amazonaws.com/id/X` → `oidc.eks.region.amazonaws.com/id/X`. */
export function oidcIssuer(providerArn: string): string {
  const marker = ':oidc-provider/';
  const i = providerArn.indexOf(marker);
  if (i < 0 || i + marker.length >= providerArn.length) {
    throw new Error(`"${providerArn}" is not an IAM OIDC provider ARN`);
  }
  return providerArn.slice(i + marker.length);
}

/** Read/write/delete objects in the workspace bucket and list it; nothing else, no other bucket. */
export function workspaceDataPolicy(bucket: string, partition = 'aws'): PolicyDocument {
  const bucketArn = `arn:${partition}:s3:::${bucket}`;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'WorkspaceDataObjects',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        Resource: `${bucketArn}/*`,
      },
      {
        Sid: 'WorkspaceDataList',
        Effect: 'Allow',
        Action: 's3:ListBucket',
        Resource: bucketArn,
      },
    ],
  };
}

export function desiredIamRole(
  cfg: Pick<ControllerConfig, 'aws' | 'fieldManager'>,
  spec: Pick<WorkspaceSpec, 'workspaceId' | 'dataBucket'>,
  names: WorkspaceNames,
  strategy: TrustPolicyStrategy = trustStrategyFor(cfg.aws.trustStrategy),
): DesiredIamRole {
  const role: DesiredIamRole = {
    name: names.iamRole,
    path: cfg.aws.rolePath,
    arn: roleArnFor(cfg, names.iamRole),
    // Only stable, ASCII facts: a description holding the (free-text) workspace name would cost a write
    // on every rename and could contain characters IAM rejects.
    description: `Runner role of Flyte workspace ${spec.workspaceId} (managed by ${cfg.fieldManager})`,
    maxSessionDuration: cfg.aws.maxSessionDurationSeconds,
    tags: {
      [IAM_TAG_MANAGED_BY]: cfg.fieldManager,
      [IAM_TAG_WORKSPACE_ID]: spec.workspaceId,
      [IAM_TAG_DATA_BUCKET]: spec.dataBucket,
    },
    trustPolicy: strategy.trustPolicy({ cfg, names }),
    inlinePolicies: { [WORKSPACE_DATA_POLICY]: workspaceDataPolicy(spec.dataBucket, cfg.aws.partition) },
  };
  if (cfg.aws.permissionsBoundaryArn) role.permissionsBoundaryArn = cfg.aws.permissionsBoundaryArn;
  return role;
}

/** Hash of everything the role should be, with policies in canonical form (formatting-independent). */
export function desiredRoleHash(role: DesiredIamRole): string {
  const canonical = {
    ...role,
    trustPolicy: canonicalPolicy(role.trustPolicy),
    inlinePolicies: Object.fromEntries(
      Object.entries(role.inlinePolicies).map(([name, doc]) => [name, canonicalPolicy(doc)]),
    ),
  };
  return createHash('sha256').update(stableStringify(canonical)).digest('hex').slice(0, 16);
}

export type RoleOwnership = 'ours' | 'other-workspace' | 'foreign';

/**
 * Whose role this is, judged from its tags only. `other-workspace`: ours, but for another workspace
 * (e.g. a name template that maps two ids to one name); `foreign`: not created by this controller.
 */
export function roleOwnership(
  tags: Record<string, string>,
  cfg: Pick<ControllerConfig, 'fieldManager'>,
  workspaceId: string,
): RoleOwnership {
  if (tags[IAM_TAG_MANAGED_BY] !== cfg.fieldManager || !tags[IAM_TAG_WORKSPACE_ID]) return 'foreign';
  return tags[IAM_TAG_WORKSPACE_ID] === workspaceId ? 'ours' : 'other-workspace';
}
