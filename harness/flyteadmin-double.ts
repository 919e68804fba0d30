// In-process FlyteAdmin test double: a real gRPC (HTTP/2 cleartext) server on loopback serving the
// trimmed `flyteidl.service.AdminService` with the generated messages, implementing FlyteAdmin's
// project and matchable-attribute semantics as measured against a real FlyteAdmin v1.16.8 (see
// docs/flyteadmin-semantics.md), plus fault injection, call counters and auth for tests and local runs.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { clone, create, type Message, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import {
  MatchableResource,
  type MatchingAttributes,
  MatchingAttributesSchema,
  WorkflowExecutionConfigSchema,
} from '../src/gen/flyteidl/admin/matchable_resource_pb.js';
import {
  type Domain,
  DomainSchema,
  InactiveProjectSchema,
  type Project,
  Project_ProjectState,
  ProjectSchema,
} from '../src/gen/flyteidl/admin/project_pb.js';
import { AdminService } from '../src/gen/flyteidl/service/admin_projects_pb.js';

export type AdminMethod = (typeof AdminService.methods)[number]['name'];

const WRITE_METHODS = new Set<string>([
  'RegisterProject',
  'UpdateProject',
  'UpdateProjectDomainAttributes',
  'DeleteProjectDomainAttributes',
  'UpdateProjectAttributes',
  'DeleteProjectAttributes',
  'UpdateWorkflowAttributes',
  'DeleteWorkflowAttributes',
]);

/** Row priorities of FlyteAdmin's resource table: the most specific level wins on Get. */
export const PRIORITY = { project: 5, projectDomain: 10, workflow: 100, launchPlan: 1000 } as const;

export interface FlyteAdminDoubleOptions {
  /** Global domains (FlyteAdmin config); default development, staging, production. */
  domains?: { id: string; name: string }[];
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** Require `authorization: Bearer <token>` (or flyte-authorization) accepted by this check. */
  requireBearer?: string | ((token: string) => boolean);
  /** Serve gRPC over TLS (HTTP/2) with this PEM certificate and key instead of h2c. */
  tls?: { cert: string; key: string };
  /** Methods answering Unimplemented (to mimic FlyteAdmin < 1.12 / < 1.13). */
  unimplemented?: AdminMethod[];
}

/** The key fields of a resource row; "" is an unset field (a wider level, or a wildcard in Delete). */
export interface RowKey {
  project: string;
  domain: string;
  workflow: string;
  launchPlan: string;
}

export interface StoredAttributes extends RowKey {
  resourceType: MatchableResource;
  /** PRIORITY of the row's level. */
  priority: number;
  attributes: MatchingAttributes;
}

export interface CallCounts {
  reads: number;
  writes: number;
  /** Writes that were accepted and applied (state changed or upserted). */
  appliedWrites: number;
  byMethod: Record<string, number>;
}

export interface RecordedCall {
  method: AdminMethod;
  request: Message;
}

interface Fault {
  remaining: number;
  code: Code;
  /** Apply the call, then answer the error anyway. */
  afterApplying: boolean;
  methods?: Set<string>;
}

// k8s.io/apimachinery validation messages, as FlyteAdmin reports them (Go %v of []string).
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const maxLenError = (n: number) => `must be no more than ${n} characters`;
const regexError = (msg: string, fmt: string, ...examples: string[]) =>
  `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(' or ')}regex used for validation is '${fmt}')`;
const QNAME_MSG =
  "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QNAME_FMT = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';

function isDNS1123Label(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push(maxLenError(63));
  if (!DNS1123_LABEL.test(v)) {
    errs.push(
      regexError(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        '[a-z0-9]([-a-z0-9]*[a-z0-9])?',
        'my-name',
        '123-abc',
      ),
    );
  }
  return errs;
}

function isQualifiedName(v: string): string[] {
  const errs: string[] = [];
  const parts = v.split('/');
  let name: string;
  if (parts.length === 1) name = parts[0] as string;
  else if (parts.length === 2) {
    const prefix = parts[0] as string;
    name = parts[1] as string;
    if (prefix.length === 0) errs.push('prefix part must be non-empty');
    else {
      if (prefix.length > 253) errs.push(`prefix part ${maxLenError(253)}`);
      if (!DNS1123_SUBDOMAIN.test(prefix)) {
        errs.push(
          `prefix part ${regexError(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*',
            'example.com',
          )}`,
        );
      }
    }
  } else {
    return [
      `a qualified name ${regexError(QNAME_MSG, QNAME_FMT, 'MyName', 'my.name', '123-abc')} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
    ];
  }
  if (name.length === 0) errs.push('name part must be non-empty');
  else if (name.length > 63) errs.push(`name part ${maxLenError(63)}`);
  if (!QUALIFIED_NAME.test(name))
    errs.push(`name part ${regexError(QNAME_MSG, QNAME_FMT, 'MyName', 'my.name', '123-abc')}`);
  return errs;
}

function isValidLabelValue(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push(maxLenError(63));
  if (!LABEL_VALUE.test(v)) {
    errs.push(
      regexError(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?',
        'MyValue',
        'my_value',
        '12345',
      ),
    );
  }
  return errs;
}

const goList = (errs: string[]) => `[${errs.join(' ')}]`;
const invalid = (msg: string) => new ConnectError(msg, Code.InvalidArgument);
const utf8Len = (s: string) => Buffer.byteLength(s, 'utf8');

/** ValidateProject (flyteadmin/pkg/manager/impl/validation/project_validator.go), rules in server order. */
function validateProject(p: Project): void {
  if (p.id === '') throw invalid('missing project_id');
  const labels = p.labels?.values;
  if (labels && Object.keys(labels).length > 0) {
    if (Object.keys(labels).length > 16) throw invalid('labels map cannot exceed 16 entries');
    for (const [k, v] of Object.entries(labels)) {
      const ke = isQualifiedName(k);
      if (ke.length > 0) throw invalid(`invalid label key [${k}]: ${goList(ke)}`);
      const ve = isValidLabelValue(v);
      if (ve.length > 0) throw invalid(`invalid label value [${v}]: ${goList(ve)}`);
    }
  }
  const ide = isDNS1123Label(p.id);
  if (ide.length > 0) throw invalid(`invalid project id [${p.id}]: ${goList(ide)}`);
  if (utf8Len(p.name) > 64) throw invalid('project_name cannot exceed 64 characters');
  if (utf8Len(p.description) > 300) throw invalid('project_description cannot exceed 300 characters');
  if (p.domains.length > 0) {
    throw invalid('Domains are currently only set system wide. Please retry without domains included in your request.');
  }
}

/** Resource type from the oneof case (validateMatchingAttributes); QoS and unset are rejected. */
function resourceTypeOf(m: MatchingAttributes | undefined, identifier: string): MatchableResource {
  if (!m) throw invalid('missing matching_attributes');
  switch (m.target.case) {
    case 'taskResourceAttributes':
      return MatchableResource.TASK_RESOURCE;
    case 'clusterResourceAttributes':
      return MatchableResource.CLUSTER_RESOURCE;
    case 'executionQueueAttributes':
      return MatchableResource.EXECUTION_QUEUE;
    case 'executionClusterLabel':
      return MatchableResource.EXECUTION_CLUSTER_LABEL;
    case 'pluginOverrides':
      return MatchableResource.PLUGIN_OVERRIDE;
    case 'workflowExecutionConfig':
      return MatchableResource.WORKFLOW_EXECUTION_CONFIG;
    case 'clusterAssignment':
      return MatchableResource.CLUSTER_ASSIGNMENT;
    default:
      throw invalid(`Unrecognized matching attributes type for request ${identifier}`);
  }
}

function priorityOf(k: RowKey): number {
  if (k.launchPlan !== '') return PRIORITY.launchPlan;
  if (k.workflow !== '') return PRIORITY.workflow;
  if (k.domain !== '') return PRIORITY.projectDomain;
  return PRIORITY.project;
}

const KEY_FIELDS = ['project', 'domain', 'workflow', 'launchPlan'] as const;
const rowKey = (k: Partial<RowKey>): RowKey => ({
  project: k.project ?? '',
  domain: k.domain ?? '',
  workflow: k.workflow ?? '',
  launchPlan: k.launchPlan ?? '',
});

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(ConnectError.from(signal.reason, Code.Canceled));
      return;
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(ConnectError.from(signal.reason, Code.Canceled));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class FlyteAdminDouble {
  private urlValue = '';
  private server?: http2.Http2Server | http2.Http2SecureServer;
  private readonly projects = new Map<string, Project>();
  /** FlyteAdmin's resource table, in insertion (primary key) order. */
  private attributes: StoredAttributes[] = [];
  /** Creation order of projects (the `created_at` column). */
  private readonly createdAt = new Map<string, number>();
  private created = 0;
  private domains: Domain[];
  private faults: Fault[] = [];
  private latencyMs = 0;
  private down = false;
  private unimplemented: Set<string>;
  private requireBearer: FlyteAdminDoubleOptions['requireBearer'];
  private counts: CallCounts = { reads: 0, writes: 0, appliedWrites: 0, byMethod: {} };
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private log: RecordedCall[] = [];
  private inFlight = 0;
  private maxInFlightSeen = 0;

  private constructor(private readonly opts: FlyteAdminDoubleOptions) {
    this.domains = this.initialDomains();
    this.unimplemented = new Set(opts.unimplemented ?? []);
    this.requireBearer = opts.requireBearer;
  }

  /** Starts a double listening on `host:port` (default 127.0.0.1, a free port). */
  static async start(opts: FlyteAdminDoubleOptions = {}): Promise<FlyteAdminDouble> {
    const d = new FlyteAdminDouble(opts);
    await d.listen();
    return d;
  }

  /** `http://host:port` (h2c, `insecure: true`), or `https://…` when started with `tls`. */
  get url(): string {
    return this.urlValue;
  }

  private async listen(): Promise<void> {
    const handler = connectNodeAdapter({ grpc: true, connect: false, grpcWeb: false, routes: (r) => this.routes(r) });
    const tls = this.opts.tls;
    const server: http2.Http2Server | http2.Http2SecureServer = tls
      ? http2.createSecureServer({ cert: tls.cert, key: tls.key }, handler)
      : http2.createServer(handler);
    server.on('session', (s) => {
      this.sessions.add(s);
      s.on('close', () => this.sessions.delete(s));
    });
    const host = this.opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, host, () => resolve());
    });
    this.server = server;
    this.urlValue = `${tls ? 'https' : 'http'}://${host}:${(server.address() as AddressInfo).port}`;
  }

  private routes(router: ConnectRouter): void {
    router.service(AdminService, {
      registerProject: (req, ctx) => this.handle('RegisterProject', ctx, req, () => this.register(req.project)),
      updateProject: (req, ctx) => this.handle('UpdateProject', ctx, req, () => this.update(req)),
      getProject: (req, ctx) => this.handle('GetProject', ctx, req, () => this.getProject(req.id)),
      listProjects: (req, ctx) => this.handle('ListProjects', ctx, req, () => this.list(req)),
      getDomains: (req, ctx) =>
        this.handle('GetDomains', ctx, req, () => ({ domains: this.domains.map((d) => clone(DomainSchema, d)) })),
      updateProjectDomainAttributes: (req, ctx) =>
        this.handle('UpdateProjectDomainAttributes', ctx, req, () => {
          const a = req.attributes;
          if (!a) throw invalid('missing attributes');
          this.validateProjectAndDomain(a.project, a.domain);
          const type = resourceTypeOf(a.matchingAttributes, `${a.project}-${a.domain}`);
          this.upsert(rowKey(a), type, a.matchingAttributes as MatchingAttributes);
          return {};
        }),
      getProjectDomainAttributes: (req, ctx) =>
        this.handle('GetProjectDomainAttributes', ctx, req, () => {
          this.validateProjectAndDomain(req.project, req.domain);
          const row = this.mostSpecific(rowKey(req), req.resourceType);
          return {
            attributes: {
              project: row.project,
              domain: row.domain,
              matchingAttributes: clone(MatchingAttributesSchema, row.attributes),
            },
          };
        }),
      deleteProjectDomainAttributes: (req, ctx) =>
        this.handle('DeleteProjectDomainAttributes', ctx, req, () => {
          this.validateProjectAndDomain(req.project, req.domain);
          this.wildcardDelete(rowKey(req), req.resourceType);
          return {};
        }),
      updateProjectAttributes: (req, ctx) =>
        this.handle('UpdateProjectAttributes', ctx, req, () => {
          const a = req.attributes;
          if (!a) throw invalid('missing attributes');
          this.validateProjectForUpdate(a.project);
          const type = resourceTypeOf(a.matchingAttributes, a.project);
          this.upsert(rowKey({ project: a.project }), type, a.matchingAttributes as MatchingAttributes);
          return {};
        }),
      getProjectAttributes: (req, ctx) =>
        this.handle('GetProjectAttributes', ctx, req, () => {
          if (!this.lookupProject(req.project)) {
            throw invalid(
              `failed to validate that project [${req.project}] is registered, err: [project [${req.project}] not found]`,
            );
          }
          // Only the exact project-level row (GetProjectLevel), no fallback.
          const row = this.attributes.find(
            (r) => r.resourceType === req.resourceType && r.priority === PRIORITY.project && r.project === req.project,
          );
          if (req.resourceType === MatchableResource.WORKFLOW_EXECUTION_CONFIG) {
            // FlyteAdmin merges its configured defaults into this type (or answers them when unset).
            const wec =
              row?.attributes.target.case === 'workflowExecutionConfig'
                ? clone(WorkflowExecutionConfigSchema, row.attributes.target.value)
                : create(WorkflowExecutionConfigSchema);
            if (wec.maxParallelism === 0) wec.maxParallelism = 25;
            return {
              attributes: {
                project: req.project,
                matchingAttributes: { target: { case: 'workflowExecutionConfig' as const, value: wec } },
              },
            };
          }
          if (!row) throw notFound(rowKey(req), req.resourceType);
          return {
            attributes: { project: req.project, matchingAttributes: clone(MatchingAttributesSchema, row.attributes) },
          };
        }),
      deleteProjectAttributes: (req, ctx) =>
        this.handle('DeleteProjectAttributes', ctx, req, () => {
          this.validateProjectForUpdate(req.project);
          this.wildcardDelete(rowKey(req), req.resourceType);
          return {};
        }),
      updateWorkflowAttributes: (req, ctx) =>
        this.handle('UpdateWorkflowAttributes', ctx, req, () => {
          const a = req.attributes;
          if (!a) throw invalid('missing attributes');
          if (a.workflow === '') throw invalid('missing name');
          this.validateProjectAndDomain(a.project, a.domain);
          const type = resourceTypeOf(a.matchingAttributes, `${a.project}-${a.domain}-${a.workflow}`);
          this.upsert(rowKey(a), type, a.matchingAttributes as MatchingAttributes);
          return {};
        }),
      getWorkflowAttributes: (req, ctx) =>
        this.handle('GetWorkflowAttributes', ctx, req, () => {
          if (req.workflow === '') throw invalid('missing name');
          this.validateProjectAndDomain(req.project, req.domain);
          const row = this.mostSpecific(rowKey(req), req.resourceType);
          return {
            attributes: {
              project: row.project,
              domain: row.domain,
              workflow: row.workflow,
              matchingAttributes: clone(MatchingAttributesSchema, row.attributes),
            },
          };
        }),
      deleteWorkflowAttributes: (req, ctx) =>
        this.handle('DeleteWorkflowAttributes', ctx, req, () => {
          if (req.workflow === '') throw invalid('missing name');
          this.validateProjectAndDomain(req.project, req.domain);
          this.wildcardDelete(rowKey(req), req.resourceType);
          return {};
        }),
      listMatchableAttributes: (req, ctx) =>
        this.handle('ListMatchableAttributes', ctx, req, () => ({
          configurations: this.attributes
            .filter((r) => r.resourceType === req.resourceType)
            .sort((a, b) => b.priority - a.priority)
            .map((r) => ({
              project: r.project,
              domain: r.domain,
              workflow: r.workflow,
              launchPlan: r.launchPlan,
              attributes: clone(MatchingAttributesSchema, r.attributes),
            })),
        })),
    });
  }

  // ---- Test controls --------------------------------------------------------------------------

  /**
   * The next `n` calls (of `methods`, default any) fail with `code` before doing anything, or, with
   * `afterApplying`, after taking effect (a lost answer).
   */
  failNext(
    n: number,
    code: Code = Code.Unavailable,
    methods?: AdminMethod[],
    o: { afterApplying?: boolean } = {},
  ): void {
    this.faults.push({
      remaining: n,
      code,
      afterApplying: o.afterApplying ?? false,
      ...(methods ? { methods: new Set(methods) } : {}),
    });
  }

  /** Drops pending injected failures (latency, down and auth settings stay). */
  clearFaults(): void {
    this.faults = [];
  }

  /** The next `n` calls answer RESOURCE_EXHAUSTED (rate limited). */
  resourceExhausted(n = 1, methods?: AdminMethod[]): void {
    this.failNext(n, Code.ResourceExhausted, methods);
  }

  /** Every call waits this long first (aborted when the client's deadline passes). */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** While down, every call answers UNAVAILABLE. */
  setDown(down: boolean): void {
    this.down = down;
  }

  setUnimplemented(methods: AdminMethod[]): void {
    this.unimplemented = new Set(methods);
  }

  setRequireBearer(check: FlyteAdminDoubleOptions['requireBearer']): void {
    this.requireBearer = check;
  }

  setDomains(domains: { id: string; name: string }[]): void {
    this.domains = domains.map((d) => create(DomainSchema, d));
  }

  /** Calls received since start/reset/resetCounters (including ones that failed). */
  calls(): CallCounts {
    return { ...this.counts, byMethod: { ...this.counts.byMethod } };
  }

  resetCounters(): void {
    this.counts = { reads: 0, writes: 0, appliedWrites: 0, byMethod: {} };
    this.log = [];
    this.maxInFlightSeen = 0;
  }

  /** Every call received (in arrival order) with its decoded request, e.g. to assert what an update sent. */
  requests(method?: AdminMethod): RecordedCall[] {
    return this.log.filter((c) => method === undefined || c.method === method);
  }

  /** Highest number of calls handled at the same time since the last resetCounters(). */
  maxConcurrentCalls(): number {
    return this.maxInFlightSeen;
  }

  inspect(): { projects: Project[]; attributes: StoredAttributes[] } {
    return {
      projects: [...this.projects.values()].map((p) => clone(ProjectSchema, p)),
      attributes: this.attributes.map((a) => ({ ...a, attributes: clone(MatchingAttributesSchema, a.attributes) })),
    };
  }

  project(id: string): Project | undefined {
    const p = this.projects.get(id);
    return p && clone(ProjectSchema, p);
  }

  /** The row stored exactly at this key (no fallback); `at` names a workflow or launch-plan level row. */
  attributesOf(
    project: string,
    domain: string,
    type: MatchableResource,
    at: { workflow?: string; launchPlan?: string } = {},
  ): MatchingAttributes | undefined {
    const key = rowKey({ project, domain, ...at });
    const row = this.attributes.find((r) => r.resourceType === type && sameKey(r, key));
    return row && clone(MatchingAttributesSchema, row.attributes);
  }

  /** Stores a project directly (no validation), e.g. a foreign or legacy project. */
  seedProject(init: MessageInitShape<typeof ProjectSchema>): void {
    const p = create(ProjectSchema, init);
    p.domains = [];
    this.projects.set(p.id, p);
    this.createdAt.set(p.id, ++this.created);
  }

  /**
   * Stores an attribute row directly at its level (domain "" = project level; `at.launchPlan` = launch-plan
   * level, which FlyteAdmin's API cannot write but its database holds).
   */
  seedAttributes(
    project: string,
    domain: string,
    attributes: MessageInitShape<typeof MatchingAttributesSchema>,
    at: { workflow?: string; launchPlan?: string } = {},
  ): void {
    const m = create(MatchingAttributesSchema, attributes);
    const type = resourceTypeOf(m, project);
    const key = rowKey({ project, domain, ...at });
    this.attributes = this.attributes.filter((r) => !(r.resourceType === type && sameKey(r, key)));
    this.attributes.push({ ...key, resourceType: type, priority: priorityOf(key), attributes: m });
  }

  /** Forgets all state, faults and counters (keeps the server and its address). */
  reset(): void {
    this.projects.clear();
    this.createdAt.clear();
    this.attributes = [];
    this.faults = [];
    this.latencyMs = 0;
    this.down = false;
    this.unimplemented = new Set(this.opts.unimplemented ?? []);
    this.requireBearer = this.opts.requireBearer;
    this.domains = this.initialDomains();
    this.resetCounters();
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---- Request handling -----------------------------------------------------------------------

  private initialDomains(): Domain[] {
    const d = this.opts.domains ?? [
      { id: 'development', name: 'development' },
      { id: 'staging', name: 'staging' },
      { id: 'production', name: 'production' },
    ];
    return d.map((x) => create(DomainSchema, x));
  }

  private async handle<T>(method: AdminMethod, ctx: HandlerContext, req: Message, fn: () => T): Promise<T> {
    const write = WRITE_METHODS.has(method);
    if (write) this.counts.writes++;
    else this.counts.reads++;
    this.counts.byMethod[method] = (this.counts.byMethod[method] ?? 0) + 1;
    this.log.push({ method, request: req });
    this.inFlight++;
    this.maxInFlightSeen = Math.max(this.maxInFlightSeen, this.inFlight);
    try {
      return await this.handleCounted(method, ctx, fn);
    } finally {
      this.inFlight--;
    }
  }

  private async handleCounted<T>(method: AdminMethod, ctx: HandlerContext, fn: () => T): Promise<T> {
    if (this.requireBearer !== undefined) {
      const header = ctx.requestHeader.get('authorization') ?? ctx.requestHeader.get('flyte-authorization') ?? '';
      const m = /^Bearer\s+(.+)$/i.exec(header);
      const ok =
        m !== null &&
        (typeof this.requireBearer === 'string' ? m[1] === this.requireBearer : this.requireBearer(m[1] as string));
      if (!ok) throw new ConnectError('token is missing or invalid', Code.Unauthenticated);
    }
    if (this.down) throw new ConnectError('FlyteAdmin is down (test double)', Code.Unavailable);
    const fault = this.faults.find((f) => f.remaining > 0 && (!f.methods || f.methods.has(method)));
    if (fault) {
      fault.remaining--;
      this.faults = this.faults.filter((f) => f.remaining > 0);
      if (!fault.afterApplying) throw new ConnectError(`injected ${Code[fault.code]} (test double)`, fault.code);
    }
    if (this.unimplemented.has(method)) {
      throw new ConnectError(`unknown method ${method} for service flyteidl.service.AdminService`, Code.Unimplemented);
    }
    if (this.latencyMs > 0) await sleep(this.latencyMs, ctx.signal);
    const result = fn();
    // The call took effect but its answer is "lost" (e.g. a proxy timed out after the server committed).
    if (fault?.afterApplying)
      throw new ConnectError(`injected ${Code[fault.code]} after applying (test double)`, fault.code);
    return result;
  }

  private register(project: Project | undefined): Record<string, never> {
    if (!project) throw invalid('missing project');
    if (project.name === '') throw invalid('missing project_name');
    validateProject(project);
    if (this.projects.has(project.id)) {
      throw new ConnectError(
        'value with matching already exists (duplicate key value violates unique constraint "projects_pkey")',
        Code.AlreadyExists,
      );
    }
    const stored = clone(ProjectSchema, project);
    stored.org = '';
    stored.domains = [];
    this.projects.set(stored.id, stored);
    this.createdAt.set(stored.id, ++this.created);
    this.counts.appliedWrites++;
    return {};
  }

  private update(req: Project): Record<string, never> {
    const current = this.lookupProject(req.id);
    // Existence first, then validation (an invalid id gets NotFound, as in FlyteAdmin; an empty id finds
    // some project, then fails validation with "missing project_id").
    if (!current) throw new ConnectError(`project [${req.id}] not found`, Code.NotFound);
    validateProject(req);
    // gorm Updates(struct): zero values are skipped; labels replaced when present; state always written.
    if (req.name !== '') current.name = req.name;
    if (req.description !== '') current.description = req.description;
    if (req.labels !== undefined) current.labels = clone(ProjectSchema, req).labels;
    current.state = req.state;
    this.counts.appliedWrites++;
    return {};
  }

  private getProject(id: string): Project {
    if (id === '') throw invalid('missing project_id');
    const p = this.projects.get(id);
    if (!p) throw new ConnectError(`project [${id}] not found`, Code.NotFound);
    return this.withDomains(p);
  }

  private withDomains(p: Project): Project {
    const out = clone(ProjectSchema, p);
    out.domains = this.domains.map((d) => clone(DomainSchema, d));
    out.org = '';
    return out;
  }

  private list(req: { limit: number; token: string; filters: string; sortBy?: { key: string; direction: number } }) {
    let offset = 0;
    if (req.token !== '') {
      if (!/^[0-9]+$/.test(req.token)) throw invalid(`invalid pagination token ${req.token} for ListProjects`);
      offset = Number(req.token);
    }
    let rows = [...this.projects.values()];
    if (req.filters.trim() === '') {
      rows = rows.filter((p) => p.state !== Project_ProjectState.ARCHIVED);
    } else {
      for (const f of req.filters.split('+')) rows = rows.filter(parseFilter(f.trim()));
    }
    const key = req.sortBy?.key || 'identifier';
    const column: Record<string, (p: Project) => string | number> = {
      identifier: (p) => p.id,
      id: (p) => p.id,
      name: (p) => p.name,
      description: (p) => p.description,
      state: (p) => p.state,
      created_at: (p) => this.createdAt.get(p.id) ?? 0,
      updated_at: (p) => this.createdAt.get(p.id) ?? 0,
    };
    const get = column[key];
    if (!get) throw invalid(`invalid sort_by key ${key}`);
    const dir = req.sortBy ? (req.sortBy.direction === 1 ? 1 : -1) : 1;
    rows.sort((a, b) => {
      const x = get(a);
      const y = get(b);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    const page = req.limit > 0 ? rows.slice(offset, offset + req.limit) : rows.slice(offset);
    const token = page.length === req.limit ? String(offset + page.length) : '';
    return { projects: page.map((p) => this.withDomains(p)), token };
  }

  /**
   * ProjectRepo.Get: an empty id is a zero-valued gorm condition, so it matches the first stored project
   * (measured: the real server accepts `project: ""` in attribute calls whenever any project exists).
   */
  private lookupProject(id: string): Project | undefined {
    if (id !== '') return this.projects.get(id);
    return this.projects.values().next().value;
  }

  private validateProjectAndDomain(project: string, domain: string): void {
    const p = this.lookupProject(project);
    if (!p) {
      throw invalid(
        `failed to validate that project [${project}] and domain [${domain}] are registered, err: [project [${project}] not found]`,
      );
    }
    if (p.state !== Project_ProjectState.ACTIVE) {
      throw new ConnectError(`project [${project}] is not active`, Code.InvalidArgument, undefined, [
        { desc: InactiveProjectSchema, value: { id: project } },
      ]);
    }
    if (!this.domains.some((d) => d.id === domain)) throw invalid(`domain [${domain}] is unrecognized by system`);
  }

  private validateProjectForUpdate(project: string): void {
    const p = this.lookupProject(project);
    if (!p) {
      throw invalid(
        `failed to validate that project [${project}] is registered, err: [project [${project}] not found]`,
      );
    }
    if (p.state !== Project_ProjectState.ACTIVE) throw invalid(`project [${project}] is not active`);
  }

  /**
   * ResourceRepo.CreateOrUpdate: FirstOrCreate on a gorm struct (zero-valued fields dropped from the
   * WHERE, priority kept), then Save of the whole MatchingAttributes. With every key field set this is an
   * exact upsert; with `project: ""` it overwrites the first row of that domain, type and level in ANY
   * project, or creates a row with an empty project.
   */
  private upsert(key: RowKey, type: MatchableResource, m: MatchingAttributes): void {
    const priority = priorityOf(key);
    const existing = this.attributes.find(
      (r) => r.resourceType === type && r.priority === priority && matchesSetFields(r, key),
    );
    let value = clone(MatchingAttributesSchema, m);
    if (
      existing &&
      type === MatchableResource.PLUGIN_OVERRIDE &&
      existing.attributes.target.case === 'pluginOverrides' &&
      value.target.case === 'pluginOverrides'
    ) {
      // The one merge-update: plugin overrides by task_type.
      const merged = clone(MatchingAttributesSchema, existing.attributes);
      if (merged.target.case === 'pluginOverrides') {
        for (const o of value.target.value.overrides) {
          const i = merged.target.value.overrides.findIndex((x) => x.taskType === o.taskType);
          if (i >= 0) merged.target.value.overrides[i] = o;
          else merged.target.value.overrides.push(o);
        }
      }
      value = merged;
    }
    if (existing) existing.attributes = value;
    else this.attributes.push({ ...key, resourceType: type, priority, attributes: value });
    this.counts.appliedWrites++;
  }

  /**
   * ResourceRepo.Get: `project IN ('', p) AND domain IN ('', d) AND workflow IN ('', w) AND launch_plan
   * IN ('', l)`, highest priority first: the most specific row, falling back to wider levels.
   */
  private mostSpecific(key: RowKey, type: MatchableResource): StoredAttributes {
    let best: StoredAttributes | undefined;
    for (const r of this.attributes) {
      if (r.resourceType !== type) continue;
      if (!KEY_FIELDS.every((f) => r[f] === '' || r[f] === key[f])) continue;
      if (!best || r.priority > best.priority) best = r;
    }
    if (!best) throw notFound(key, type);
    return best;
  }

  /**
   * ResourceRepo.Delete: a gorm struct WHERE, so every key field left empty matches anything. Deleting a
   * project-domain row also deletes that project-domain's workflow and launch-plan rows of the type.
   */
  private wildcardDelete(key: RowKey, type: MatchableResource): void {
    this.attributes = this.attributes.filter((r) => !(r.resourceType === type && matchesSetFields(r, key)));
    this.counts.appliedWrites++;
  }
}

const sameKey = (a: RowKey, b: RowKey) => KEY_FIELDS.every((f) => a[f] === b[f]);
/** The row agrees with every non-empty field of `key` (gorm drops zero values from a struct WHERE). */
const matchesSetFields = (row: RowKey, key: RowKey) => KEY_FIELDS.every((f) => key[f] === '' || row[f] === key[f]);

function notFound(k: RowKey, type: MatchableResource): ConnectError {
  return new ConnectError(
    `Resource [{Project:${k.project} Domain:${k.domain} Workflow:${k.workflow} LaunchPlan:${k.launchPlan} ResourceType:${MatchableResource[type]}}] not found`,
    Code.NotFound,
  );
}

/** FlyteAdmin filter expressions on projects: eq/ne/contains/value_in on identifier, name, state. */
function parseFilter(expr: string): (p: Project) => boolean {
  const m = /^(eq|ne|gt|gte|lt|lte|contains|value_in|value_not_in)\(([a-z_]+),(.*)\)$/.exec(expr);
  if (!m) throw invalid(`invalid filter expression: ${expr}`);
  const [, op, field, raw] = m as unknown as [string, string, string, string];
  const getters: Record<string, (p: Project) => string | number> = {
    identifier: (p) => p.id,
    name: (p) => p.name,
    description: (p) => p.description,
    state: (p) => p.state,
    // The labels column holds the whole serialized Project: a filter on it matches bytes anywhere in it
    // (a name or description containing the text matches too).
    labels: (p) => Buffer.from(toBinary(ProjectSchema, p)).toString('latin1'),
  };
  const get = getters[field];
  if (!get) throw invalid(`invalid filter field ${field}`);
  const conv = (v: string) =>
    field === 'state' ? Number(v) : field === 'labels' ? Buffer.from(v, 'utf8').toString('latin1') : v;
  switch (op) {
    case 'eq':
      return (p) => get(p) === conv(raw);
    case 'ne':
      return (p) => get(p) !== conv(raw);
    case 'gt':
      return (p) => get(p) > conv(raw);
    case 'gte':
      return (p) => get(p) >= conv(raw);
    case 'lt':
      return (p) => get(p) < conv(raw);
    case 'lte':
      return (p) => get(p) <= conv(raw);
    case 'contains':
      return (p) => String(get(p)).includes(raw);
    case 'value_in':
      return (p) => raw.split(';').map(conv).includes(get(p));
    default:
      return (p) => !raw.split(';').map(conv).includes(get(p));
  }
}

export async function startFlyteAdminDouble(opts?: FlyteAdminDoubleOptions): Promise<FlyteAdminDouble> {
  return FlyteAdminDouble.start(opts);
}
