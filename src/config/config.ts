// One typed, validated configuration for the whole controller. Defaults follow the design; every
// setting can be overridden by a JSON/YAML-free config file (JSON) and by FWC_* environment variables.
import { readFileSync } from 'node:fs';

export interface TierQuota {
  'requests.cpu': string;
  'requests.memory': string;
  'limits.cpu': string;
  'limits.memory': string;
  pods: string;
  persistentvolumeclaims: string;
  [resource: string]: string;
}

export type RbacSubjectField = 'email' | 'user_id';
export type TrustStrategyName = 'irsa' | 'pod-identity';
export type FlyteAuthConfig =
  | { type: 'none' }
  | { type: 'bearer-file'; tokenFile: string }
  | { type: 'client-credentials'; tokenUrl: string; clientId: string; clientSecretFile: string; scopes: string[] };

export interface ControllerConfig {
  /** Controller name used in metrics labels, logs and as the Lease holder prefix. */
  controllerName: string;
  /** The one server-side-apply field manager and the value of app.kubernetes.io/managed-by. */
  fieldManager: string;
  /** Namespace the controller runs in (Lease, its own objects); never a workspace namespace. */
  controllerNamespace: string;
  /** Namespaces whose ConfigMaps may describe workspaces; ['*'] = all namespaces (explicit opt-in). */
  sourceNamespaces: string[];
  /** Label selector that marks workspace ConfigMaps. */
  configMapSelector: string;
  /** Key in the ConfigMap that holds the workspace document. */
  configMapKey: string;
  /** Namespace where Flyte's own components run (allowed in/out by the NetworkPolicy). */
  flyteSystemNamespace: string;
  /** Namespace of cluster DNS (egress allowed on 53). */
  dnsNamespace: string;
  /** Namespaces a workspace may never map onto, on top of kube-*, default and the two above. */
  reservedNamespaces: string[];
  names: {
    /** Single-namespace mode: Go-style {{ workspace_id }} placeholders. */
    namespace: string;
    /** One namespace per Flyte domain, Flyte's own mapping. */
    namespacePerDomain: boolean;
    domainNamespace: string;
    serviceAccount: string;
    resourceQuota: string;
    networkPolicy: string;
    iamRole: string;
    ownerClusterRole: string;
    contributorClusterRole: string;
    /** The ConfigMap with the users' Flyte client configuration, in every workspace namespace (fixed name). */
    contextConfigMap: string;
  };
  rbac: {
    /** Which user field becomes the RBAC subject name (what the cluster's authenticator calls the user). */
    subjectField: RbacSubjectField;
    /** Domains (per-domain mode) where contributors get bindings. */
    contributorDomains: string[];
  };
  domains: string[];
  defaultTier: string;
  tiers: Record<string, TierQuota>;
  limits: {
    maxUsers: number;
    maxDocumentBytes: number;
    maxStringLength: number;
  };
  /** Allowed bucket names: templates with {{ workspace_id }} and '*' wildcards. */
  bucketPatterns: string[];
  flyte: {
    enabled: boolean;
    endpoint: string;
    /** h2c when true; TLS otherwise. */
    insecure: boolean;
    caFile?: string;
    auth: FlyteAuthConfig;
    consoleBaseUrl: string;
    /**
     * FlyteAdmin's gRPC endpoint as workspace users reach it (`host:port`), written into each workspace's
     * context ConfigMap. Not `endpoint`, which is how the controller reaches it from inside the cluster.
     * Unset: the context ConfigMap carries no endpoint, only project, domain and workspace variables.
     */
    userEndpoint?: string;
    /** Whether users' clients talk plaintext to userEndpoint (flytectl/flytekit `admin.insecure`). */
    userInsecure: boolean;
    callTimeoutMs: number;
    maxConcurrentCalls: number;
    maxAttempts: number;
    /** Ask FlyteAdmin for its domains (GetDomains) instead of using `domains`. */
    discoverDomains: boolean;
    /** How often each converged project and its attributes are re-read to find drift made in FlyteAdmin. */
    driftCheckIntervalSeconds: number;
    /**
     * Archive our projects whose workspace no longer exists in any watched source (found by label in
     * FlyteAdmin, at reconcile.orphanSweepIntervalSeconds); dryRun only logs and counts. Off by default,
     * like aws.orphanSweep: a project carries no source namespace, so a second installation with the same
     * fieldManager on the same FlyteAdmin would look orphaned to this one.
     */
    orphanSweep: { enabled: boolean; dryRun: boolean };
  };
  aws: {
    enabled: boolean;
    region: string;
    endpoint?: string;
    accountId: string;
    partition: string;
    trustStrategy: TrustStrategyName;
    /** arn:aws:iam::<account>:oidc-provider/<issuer host/path>, required for IRSA. */
    oidcProviderArn: string;
    rolePath: string;
    permissionsBoundaryArn?: string;
    maxSessionDurationSeconds: number;
    maxConcurrentCalls: number;
    /**
     * Request budget (token bucket, per HTTP attempt). IAM's control plane allows few requests per second
     * per account, shared with every other client: this bounds how fast new workspaces get their roles.
     */
    requestsPerSecond: number;
    requestBurst: number;
    /**
     * How often each converged role is re-read to find drift made directly in IAM. Stretched when the
     * workspaces' drift checks would take more than half the request budget (see iamDriftCheckIntervalMs).
     */
    driftCheckIntervalSeconds: number;
    maxAttempts: number;
    orphanSweep: { enabled: boolean; dryRun: boolean };
  };
  reconcile: {
    concurrency: number;
    resyncPeriodSeconds: number;
    baseBackoffMs: number;
    maxBackoffMs: number;
    orphanSweepIntervalSeconds: number;
    /** Watch considered stalled when silent for this long beyond its server timeout. */
    watchStallSeconds: number;
  };
  server: { metricsPort: number; healthPort: number; bindAddress: string };
  leaderElection: {
    enabled: boolean;
    leaseName: string;
    namespace: string;
    leaseDurationSeconds: number;
    renewDeadlineSeconds: number;
    retryPeriodSeconds: number;
  };
  shutdownGraceSeconds: number;
  logLevel: string;
}

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const WORKSPACE_ID_LABEL = 'workspaces.flyte.org/workspace-id';
export const STATUS_ANNOTATION = 'workspaces.flyte.org/status';
export const RECONCILE_REQUEST_ANNOTATION = 'workspaces.flyte.org/reconcile-requested-at';
export const SOURCE_ANNOTATION = 'workspaces.flyte.org/source';
export const FINALIZER = 'workspaces.flyte.org/cleanup';

export function defaultConfig(): ControllerConfig {
  return {
    controllerName: 'workspace',
    fieldManager: 'flyte-workspace-controller',
    controllerNamespace: 'flyte-workspace-controller',
    sourceNamespaces: ['workspace-platform'],
    configMapSelector: 'app=workspace-config',
    configMapKey: 'workspace.json',
    flyteSystemNamespace: 'flyte',
    dnsNamespace: 'kube-system',
    reservedNamespaces: [],
    names: {
      namespace: 'flyte-{{ workspace_id }}',
      namespacePerDomain: false,
      domainNamespace: '{{ project }}-{{ domain }}',
      serviceAccount: 'flyte-{{ workspace_id }}-runner',
      resourceQuota: '{{ workspace_id }}-quota',
      networkPolicy: '{{ workspace_id }}-isolation',
      iamRole: 'FlyteWorkspace-{{ workspace_id }}-Role',
      ownerClusterRole: 'flyte-workspace-owner',
      contributorClusterRole: 'flyte-workspace-contributor',
      contextConfigMap: 'flyte-workspace-context',
    },
    rbac: { subjectField: 'email', contributorDomains: ['development', 'staging'] },
    domains: ['development', 'staging', 'production'],
    defaultTier: 'default',
    tiers: {
      default: {
        'requests.cpu': '20',
        'requests.memory': '40Gi',
        'limits.cpu': '40',
        'limits.memory': '80Gi',
        pods: '100',
        persistentvolumeclaims: '20',
      },
    },
    limits: { maxUsers: 500, maxDocumentBytes: 256 * 1024, maxStringLength: 256 },
    bucketPatterns: ['{{ workspace_id }}-data'],
    flyte: {
      enabled: true,
      endpoint: 'http://flyteadmin.flyte.svc.cluster.local:81',
      insecure: true,
      auth: { type: 'none' },
      consoleBaseUrl: 'http://localhost:30080',
      userInsecure: false,
      callTimeoutMs: 10_000,
      maxConcurrentCalls: 8,
      maxAttempts: 4,
      discoverDomains: true,
      driftCheckIntervalSeconds: 1800,
      orphanSweep: { enabled: false, dryRun: true },
    },
    aws: {
      enabled: true,
      region: 'us-east-1',
      accountId: '123456789012',
      partition: 'aws',
      trustStrategy: 'irsa',
      oidcProviderArn: 'arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE',
      rolePath: '/flyte-workspaces/',
      maxSessionDurationSeconds: 3600,
      maxConcurrentCalls: 4,
      requestsPerSecond: 5,
      requestBurst: 10,
      driftCheckIntervalSeconds: 3600,
      maxAttempts: 5,
      orphanSweep: { enabled: false, dryRun: true },
    },
    reconcile: {
      concurrency: 4,
      resyncPeriodSeconds: 600,
      baseBackoffMs: 500,
      maxBackoffMs: 300_000,
      orphanSweepIntervalSeconds: 900,
      watchStallSeconds: 120,
    },
    server: { metricsPort: 8080, healthPort: 8081, bindAddress: '0.0.0.0' },
    leaderElection: {
      enabled: true,
      leaseName: 'flyte-workspace-controller',
      namespace: 'flyte-workspace-controller',
      leaseDurationSeconds: 15,
      renewDeadlineSeconds: 10,
      retryPeriodSeconds: 2,
    },
    shutdownGraceSeconds: 25,
    logLevel: 'info',
  };
}

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`invalid configuration: ${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Deep-merges `override` into `base`; arrays and scalars replace, objects merge. */
export function mergeConfig<T>(base: T, override: unknown, path = ''): T {
  if (override === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(override)) return override as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(override)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    const key = path ? `${path}.${k}` : k;
    if (!(k in out) && !isOpenMap(path) && !OPTIONAL_SETTINGS.has(key)) throw new ConfigError(key, 'unknown setting');
    out[k] = mergeConfig(out[k], v, key);
  }
  return out as T;
}

// Optional settings have no default, so they are absent from defaultConfig() but still known.
const OPTIONAL_SETTINGS = new Set(['aws.endpoint', 'aws.permissionsBoundaryArn', 'flyte.caFile', 'flyte.userEndpoint']);

// Maps whose keys are user-chosen (tier names, tier resources) rather than settings.
function isOpenMap(path: string): boolean {
  return path === 'tiers' || path.startsWith('tiers.') || path === 'flyte.auth';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** FWC_A__B=value sets a.b (value parsed as JSON when it parses, else kept as a string). */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('FWC_') || raw === undefined || name === 'FWC_CONFIG' || name === 'FWC_CACHE_DIR') continue;
    const path = name
      .slice(4)
      .split('__')
      .map((part) => part.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
    let value: Json;
    try {
      value = JSON.parse(raw) as Json;
    } catch {
      value = raw;
    }
    let node: Record<string, Json> = out;
    for (const [i, seg] of path.entries()) {
      if (i === path.length - 1) node[seg] = value;
      else {
        const next = (node[seg] ?? {}) as Record<string, Json>;
        node[seg] = next;
        node = next;
      }
    }
  }
  return out;
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: unknown;
}

export function loadConfig(opts: LoadConfigOptions = {}): ControllerConfig {
  let cfg = defaultConfig();
  const file = opts.file ?? opts.env?.FWC_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError('config file', `${file}: ${(err as Error).message}`);
    }
    cfg = mergeConfig(cfg, parsed);
  }
  if (opts.env) cfg = mergeConfig(cfg, envOverrides(opts.env));
  if (opts.overrides) cfg = mergeConfig(cfg, opts.overrides);
  validateConfig(cfg);
  return cfg;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** gRPC target as flytectl and flytekit take it: host or host:port, optionally with flytectl's `dns:///`. */
const GRPC_HOST_PORT = /^(dns:\/\/\/)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$/;
const PLACEHOLDER = /\{\{\s*([a-z_]+)\s*\}\}/g;

export function validateConfig(cfg: ControllerConfig): void {
  const need = (ok: boolean, setting: string, message: string) => {
    if (!ok) throw new ConfigError(setting, message);
  };
  need(cfg.sourceNamespaces.length > 0, 'sourceNamespaces', 'must list at least one namespace, or "*"');
  for (const ns of cfg.sourceNamespaces) {
    need(ns === '*' || DNS1123_LABEL.test(ns), 'sourceNamespaces', `"${ns}" is not a namespace name`);
  }
  need(
    !(cfg.sourceNamespaces.includes('*') && cfg.sourceNamespaces.length > 1),
    'sourceNamespaces',
    '"*" cannot be combined with other namespaces',
  );
  need(/^[a-z0-9.-]+\/?[^=!]*(=|!=)/.test(cfg.configMapSelector), 'configMapSelector', 'must be a label selector');
  need(cfg.domains.length > 0, 'domains', 'must not be empty');
  for (const d of cfg.domains) need(DNS1123_LABEL.test(d), 'domains', `"${d}" is not a DNS-1123 label`);
  for (const d of cfg.rbac.contributorDomains) {
    need(cfg.domains.includes(d), 'rbac.contributorDomains', `"${d}" is not one of domains`);
  }
  need(cfg.defaultTier in cfg.tiers, 'defaultTier', `"${cfg.defaultTier}" is not a key of tiers`);
  for (const [tier, quota] of Object.entries(cfg.tiers)) {
    need(DNS1123_LABEL.test(tier), `tiers.${tier}`, 'tier names must be DNS-1123 labels');
    for (const [res, qty] of Object.entries(quota)) {
      need(
        typeof qty === 'string' && /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.test(qty),
        `tiers.${tier}.${res}`,
        `"${String(qty)}" is not a Kubernetes quantity`,
      );
    }
  }
  const templates: [string, string, string[]][] = [
    ['names.namespace', cfg.names.namespace, ['workspace_id']],
    ['names.domainNamespace', cfg.names.domainNamespace, ['workspace_id', 'project', 'domain']],
    ['names.serviceAccount', cfg.names.serviceAccount, ['workspace_id']],
    ['names.resourceQuota', cfg.names.resourceQuota, ['workspace_id']],
    ['names.networkPolicy', cfg.names.networkPolicy, ['workspace_id']],
    ['names.iamRole', cfg.names.iamRole, ['workspace_id']],
  ];
  for (const [setting, tpl, allowed] of templates) {
    const used = [...tpl.matchAll(PLACEHOLDER)].map((m) => m[1] as string);
    need(used.length > 0, setting, 'must contain a placeholder so names differ per workspace');
    for (const u of used) need(allowed.includes(u), setting, `unknown placeholder {{ ${u} }}`);
  }
  need(
    DNS1123_SUBDOMAIN.test(cfg.names.contextConfigMap) && cfg.names.contextConfigMap.length <= 253,
    'names.contextConfigMap',
    'must be a ConfigMap name (DNS-1123 subdomain)',
  );
  if (cfg.flyte.userEndpoint !== undefined) {
    need(
      GRPC_HOST_PORT.test(cfg.flyte.userEndpoint),
      'flyte.userEndpoint',
      'must be host or host:port (FlyteAdmin gRPC, no http:// scheme), e.g. flyte.example.com:443',
    );
  }
  if (cfg.names.namespacePerDomain) {
    need(/\{\{\s*domain\s*\}\}/.test(cfg.names.domainNamespace), 'names.domainNamespace', 'must contain {{ domain }}');
  }
  need(cfg.bucketPatterns.length > 0, 'bucketPatterns', 'must not be empty');
  need(/^\/([\x21-\x7e]+\/)?$/.test(cfg.aws.rolePath), 'aws.rolePath', 'must start and end with "/"');
  need(/^[0-9]{12}$/.test(cfg.aws.accountId), 'aws.accountId', 'must be 12 digits');
  if (cfg.aws.enabled && cfg.aws.trustStrategy === 'irsa') {
    need(
      /^arn:[a-z-]+:iam::[0-9]{12}:oidc-provider\/.+/.test(cfg.aws.oidcProviderArn),
      'aws.oidcProviderArn',
      'must be an IAM OIDC provider ARN',
    );
  }
  need(['irsa', 'pod-identity'].includes(cfg.aws.trustStrategy), 'aws.trustStrategy', 'must be irsa or pod-identity');
  need(
    cfg.aws.maxSessionDurationSeconds >= 3600 && cfg.aws.maxSessionDurationSeconds <= 43200,
    'aws.maxSessionDurationSeconds',
    'must be between 3600 and 43200',
  );
  if (cfg.flyte.enabled) {
    need(/^https?:\/\/[^/]+/.test(cfg.flyte.endpoint), 'flyte.endpoint', 'must be an http(s) URL');
    const auth = cfg.flyte.auth;
    need(['none', 'bearer-file', 'client-credentials'].includes(auth.type), 'flyte.auth.type', 'unknown type');
    if (auth.type === 'bearer-file') need(!!auth.tokenFile, 'flyte.auth.tokenFile', 'required');
    if (auth.type === 'client-credentials') {
      need(/^https?:\/\//.test(auth.tokenUrl ?? ''), 'flyte.auth.tokenUrl', 'must be an http(s) URL');
      need(!!auth.clientId, 'flyte.auth.clientId', 'required');
      need(!!auth.clientSecretFile, 'flyte.auth.clientSecretFile', 'required');
    }
  }
  const positive: [string, number][] = [
    ['reconcile.concurrency', cfg.reconcile.concurrency],
    ['reconcile.resyncPeriodSeconds', cfg.reconcile.resyncPeriodSeconds],
    ['reconcile.baseBackoffMs', cfg.reconcile.baseBackoffMs],
    ['reconcile.maxBackoffMs', cfg.reconcile.maxBackoffMs],
    ['flyte.callTimeoutMs', cfg.flyte.callTimeoutMs],
    ['flyte.maxConcurrentCalls', cfg.flyte.maxConcurrentCalls],
    ['aws.maxConcurrentCalls', cfg.aws.maxConcurrentCalls],
    ['aws.requestsPerSecond', cfg.aws.requestsPerSecond],
    ['aws.driftCheckIntervalSeconds', cfg.aws.driftCheckIntervalSeconds],
    ['flyte.driftCheckIntervalSeconds', cfg.flyte.driftCheckIntervalSeconds],
    ['limits.maxUsers', cfg.limits.maxUsers],
  ];
  need(Number.isFinite(cfg.aws.requestBurst) && cfg.aws.requestBurst >= 1, 'aws.requestBurst', 'must be ≥ 1');
  for (const [setting, v] of positive) need(Number.isFinite(v) && v > 0, setting, 'must be a positive number');
  for (const [setting, port] of [
    ['server.metricsPort', cfg.server.metricsPort],
    ['server.healthPort', cfg.server.healthPort],
  ] as const) {
    need(Number.isInteger(port) && port >= 0 && port < 65536, setting, 'must be a port number');
  }
  const le = cfg.leaderElection;
  need(
    le.leaseDurationSeconds > le.renewDeadlineSeconds,
    'leaderElection.leaseDurationSeconds',
    'must exceed renewDeadlineSeconds',
  );
  need(
    le.renewDeadlineSeconds > 1.2 * le.retryPeriodSeconds,
    'leaderElection.renewDeadlineSeconds',
    'must exceed 1.2 × retryPeriodSeconds',
  );
}
