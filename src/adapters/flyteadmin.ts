// FlyteAdmin gRPC client: the few AdminService RPCs the Flyte step needs, over connect-node's gRPC
// transport (h2c when insecure, TLS with an optional extra CA otherwise), with bearer-token or OAuth2
// client-credentials auth, a per-call deadline, retries with backoff + jitter for transient codes only,
// and a request budget (shared concurrency limit + a total time budget per reconcile step) so one slow
// FlyteAdmin cannot stall the work queue. Server semantics: docs/flyteadmin-semantics.md.
//
// Deliberately no attribute Delete: FlyteAdmin's Delete*Attributes treats every key field left empty as
// a wildcard, so a project-domain delete also removes users' workflow- and launch-plan-level overrides.
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { type CallOptions, type Client, Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import type { ControllerConfig, FlyteAuthConfig } from '../config/config.js';
import type { MatchableResource, MatchingAttributes } from '../gen/flyteidl/admin/matchable_resource_pb.js';
import type { ProjectDomainAttributes } from '../gen/flyteidl/admin/project_domain_attributes_pb.js';
import {
  InactiveProjectSchema,
  type Project,
  type ProjectListRequestSchema,
  type ProjectSchema,
  type Projects,
} from '../gen/flyteidl/admin/project_pb.js';
import { AdminService } from '../gen/flyteidl/service/admin_projects_pb.js';
import { type Clock, systemClock } from '../kinds/clock.js';
import { type ErrorClass, StepError } from '../kinds/step.js';
import { Semaphore } from '../ratelimit/semaphore.js';
import type { CallStats } from './call-stats.js';

/** What the client is built from: where FlyteAdmin is, how to authenticate, and the call limits. */
export type FlyteAdminClientConfig = Pick<
  ControllerConfig['flyte'],
  'endpoint' | 'insecure' | 'caFile' | 'auth' | 'callTimeoutMs' | 'maxConcurrentCalls' | 'maxAttempts'
>;
export type ProjectInit = MessageInitShape<typeof ProjectSchema>;

/**
 * What the Flyte step needs from FlyteAdmin, in generated message types. Errors are ConnectErrors (the
 * step reads their gRPC code); toFlyteError gives one its reason and class.
 */
export interface FlyteAdminApi {
  /** The project, archived ones included; undefined when it does not exist. */
  getProject(id: string): Promise<Project | undefined>;
  /** Registers a project; a duplicate id fails with Code.AlreadyExists. */
  registerProject(project: ProjectInit): Promise<void>;
  /** UpdateProject: send the FULL project including `state` (FlyteAdmin always writes state). */
  updateProject(project: ProjectInit): Promise<void>;
  /** Domain ids configured in FlyteAdmin; the fallback list when the server has no GetDomains. */
  getDomains(): Promise<string[]>;
  /**
   * The attributes FlyteAdmin answers for (project, domain, type); undefined on NotFound. Note the
   * answer may be the project-level row (domain ""), which is not a project-domain row.
   */
  getProjectDomainAttributes(
    project: string,
    domain: string,
    type: MatchableResource,
  ): Promise<ProjectDomainAttributes | undefined>;
  /** Upsert: replaces the whole attribute set of that resource type for the project-domain. */
  updateProjectDomainAttributes(project: string, domain: string, attributes: MatchingAttributes): Promise<void>;
  /**
   * One page of ListProjects (filters as FlyteAdmin parses them; with filters, archived projects are
   * listed too). `limit` must be > 0: FlyteAdmin returns a token iff the page is full.
   */
  listProjects(page: MessageInitShape<typeof ProjectListRequestSchema> & { limit: number }): Promise<Projects>;
  /**
   * A view of this client whose calls share one total time budget: waiting for a concurrency slot,
   * every attempt and every backoff count against it; once spent, calls fail with DeadlineExceeded.
   */
  withBudget(budgetMs: number): FlyteAdminApi;
}

export interface FlyteAdminClient extends FlyteAdminApi {
  /** Closes the HTTP/2 connection (a later call reconnects). */
  close(): void;
}

export interface FlyteAdminClientOptions {
  stats: CallStats;
  log: Logger;
  /** Returned by getDomains() when FlyteAdmin predates GetDomains (Unimplemented). Default: []. */
  fallbackDomains?: string[];
  /** Retry backoff: attempt n waits in [d/2, d] with d = min(maxMs, baseMs·2^(n-1)). */
  backoff?: { baseMs?: number; maxMs?: number };
  random?: () => number;
  /** Time for call budgets, slot waits and retry backoff. Default: the system clock. */
  clock?: Clock;
  /** Extra interceptors (after auth). */
  interceptors?: Interceptor[];
}

/** The only codes worth retrying: the server or the path to it is temporarily unable to answer. */
export const RETRYABLE_CODES: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
]);

export function isRetryableCode(code: Code): boolean {
  return RETRYABLE_CODES.has(code);
}

/** Backoff before retry number `attempt` (1-based): equal jitter over an exponential ceiling. */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

// ---- Auth -----------------------------------------------------------------------------------------

export interface TokenSource {
  token(): Promise<string>;
  /** The server rejected the token: forget it so the next call gets a fresh one. */
  invalidate(): void;
}

/** Bearer token from a (mounted, rotated) file: re-read whenever the file's identity/mtime/size change. */
export class FileTokenSource implements TokenSource {
  private cached?: { key: string; token: string };

  constructor(private readonly path: string) {}

  async token(): Promise<string> {
    let key: string;
    try {
      const st = await stat(this.path);
      key = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch (err) {
      throw new ConnectError(`cannot read FlyteAdmin token file: ${(err as Error).message}`, Code.Unauthenticated);
    }
    if (this.cached?.key === key) return this.cached.token;
    const token = (await readFile(this.path, 'utf8')).trim();
    if (!token) throw new ConnectError('FlyteAdmin token file is empty', Code.Unauthenticated);
    this.cached = { key, token };
    return token;
  }

  invalidate(): void {
    this.cached = undefined;
  }
}

export interface ClientCredentialsOptions {
  tokenUrl: string;
  clientId: string;
  clientSecretFile: string;
  scopes: string[];
  log: Logger;
  /** Refresh this long before expiry (default 60 s; at most half the token's lifetime). */
  refreshSkewMs?: number;
  /** Lifetime assumed when the token response has no expires_in (default 300 s). */
  defaultLifetimeMs?: number;
  timeoutMs?: number;
  ca?: string[];
  now?: () => number;
  /** Replaces the HTTP POST to the token endpoint (tests). */
  httpPost?: TokenPost;
}

export type TokenPost = (
  url: string,
  headers: Record<string, string>,
  body: string,
) => Promise<{ status: number; body: TokenResponse }>;

export interface TokenResponse {
  access_token?: unknown;
  expires_in?: unknown;
  error?: unknown;
}

/**
 * OAuth2 client credentials (RFC 6749 §4.4): POSTs to the token endpoint with the client id and the
 * secret read from its mounted file (re-read on every fetch, so rotation needs no restart), caches the
 * token until shortly before expiry and lets concurrent callers share one refresh. Tokens are never logged.
 */
export class ClientCredentialsTokenSource implements TokenSource {
  private cached?: { token: string; expiresAt: number; refreshAt: number };
  private inflight?: Promise<string>;
  private style: 'basic' | 'body' = 'basic';
  private readonly dispatcher?: Agent;
  /** Token endpoint requests made (for tests and debugging). */
  fetches = 0;

  constructor(private readonly o: ClientCredentialsOptions) {
    if (o.ca) this.dispatcher = new Agent({ connect: { ca: o.ca } });
  }

  private now(): number {
    return this.o.now ? this.o.now() : Date.now();
  }

  async token(): Promise<string> {
    const c = this.cached;
    const now = this.now();
    if (c && now < c.refreshAt) return c.token;
    this.inflight ??= this.refresh().finally(() => {
      this.inflight = undefined;
    });
    try {
      return await this.inflight;
    } catch (err) {
      // Refresh failed: a token that has not expired yet is still better than failing the call.
      if (c && now < c.expiresAt) {
        this.o.log.warn({ err: (err as Error).message }, 'FlyteAdmin token refresh failed; using the current token');
        return c.token;
      }
      throw err;
    }
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private async refresh(): Promise<string> {
    const secret = (
      await readFile(this.o.clientSecretFile, 'utf8').catch((err: Error) => {
        throw new ConnectError(`cannot read FlyteAdmin client secret file: ${err.message}`, Code.Unauthenticated);
      })
    ).trim();
    let res = await this.post(secret, this.style);
    if ((res.status === 401 || res.body.error === 'invalid_client') && this.style === 'basic') {
      // Some servers only accept client_secret_post; remember what works.
      const alt = await this.post(secret, 'body');
      if (alt.status < 300) this.style = 'body';
      res = alt;
    }
    if (res.status >= 300 || typeof res.body.access_token !== 'string' || !res.body.access_token) {
      const why = typeof res.body.error === 'string' ? ` (${res.body.error.slice(0, 64)})` : '';
      const code = res.status >= 500 || res.status === 429 ? Code.Unavailable : Code.Unauthenticated;
      throw new ConnectError(`token endpoint answered HTTP ${res.status}${why}`, code);
    }
    const issuedAt = this.now();
    const expiresIn = Number(res.body.expires_in);
    const lifetime =
      Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : (this.o.defaultLifetimeMs ?? 300_000);
    const skew = Math.min(this.o.refreshSkewMs ?? 60_000, lifetime / 2);
    this.cached = {
      token: res.body.access_token,
      expiresAt: issuedAt + lifetime,
      refreshAt: issuedAt + lifetime - skew,
    };
    this.o.log.debug({ expiresInSeconds: Math.round(lifetime / 1000) }, 'FlyteAdmin access token refreshed');
    return res.body.access_token;
  }

  private async post(secret: string, style: 'basic' | 'body'): Promise<{ status: number; body: TokenResponse }> {
    this.fetches++;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.o.scopes.length > 0) form.set('scope', this.o.scopes.join(' '));
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if (style === 'basic') {
      const pair = `${encodeURIComponent(this.o.clientId)}:${encodeURIComponent(secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      form.set('client_id', this.o.clientId);
      form.set('client_secret', secret);
    }
    if (this.o.httpPost) return this.o.httpPost(this.o.tokenUrl, headers, form.toString());
    try {
      const res = await request(this.o.tokenUrl, {
        method: 'POST',
        headers,
        body: form.toString(),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 10_000),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
      const text = await res.body.text();
      let body: TokenResponse = {};
      try {
        body = JSON.parse(text) as TokenResponse;
      } catch {
        body = {};
      }
      return { status: res.statusCode, body };
    } catch (err) {
      throw new ConnectError(`token endpoint unreachable: ${(err as Error).message}`, Code.Unavailable);
    }
  }
}

export function tokenSourceFor(auth: FlyteAuthConfig, log: Logger, ca?: string[]): TokenSource | undefined {
  switch (auth.type) {
    case 'none':
      return undefined;
    case 'bearer-file':
      return new FileTokenSource(auth.tokenFile);
    case 'client-credentials':
      return new ClientCredentialsTokenSource({
        tokenUrl: auth.tokenUrl,
        clientId: auth.clientId,
        clientSecretFile: auth.clientSecretFile,
        scopes: auth.scopes ?? [],
        log,
        ...(ca ? { ca } : {}),
      });
  }
}

function authInterceptor(source: TokenSource): Interceptor {
  return (next) => async (req) => {
    req.header.set('authorization', `Bearer ${await source.token()}`);
    return next(req);
  };
}

// ---- Client ---------------------------------------------------------------------------------------

interface Core {
  client: Client<typeof AdminService>;
  /** Call slots shared by every budget view: cfg.maxConcurrentCalls at once, granted in arrival order. */
  slots: Semaphore;
  cfg: FlyteAdminClientConfig;
  o: FlyteAdminClientOptions;
  tokens?: TokenSource;
  /** Sticky: the server answered Unimplemented for GetProject, use ListProjects. */
  noGetProject: boolean;
  session: Http2SessionManager;
}

/** Builds the client from `cfg.flyte`. Connections are lazy: nothing is dialled until the first call. */
export function createFlyteAdminClient(cfg: FlyteAdminClientConfig, o: FlyteAdminClientOptions): FlyteAdminClient {
  const url = new URL(cfg.endpoint);
  url.protocol = cfg.insecure ? 'http:' : 'https:';
  const baseUrl = url.toString().replace(/\/+$/, '');
  const ca = cfg.caFile && !cfg.insecure ? [...rootCertificates, readFileSync(cfg.caFile, 'utf8')] : undefined;
  const session = new Http2SessionManager(
    baseUrl,
    { idleConnectionTimeoutMs: 5 * 60_000, pingIntervalMs: 30_000, pingTimeoutMs: 10_000 },
    ca ? { ca } : {},
  );
  const tokens = tokenSourceFor(cfg.auth, o.log, ca);
  const interceptors = [...(tokens ? [authInterceptor(tokens)] : []), ...(o.interceptors ?? [])];
  const transport = createGrpcTransport({ baseUrl, sessionManager: session, interceptors });
  const core: Core = {
    client: createClient(AdminService, transport),
    slots: new Semaphore(cfg.maxConcurrentCalls, o.clock),
    cfg,
    o,
    noGetProject: false,
    session,
  };
  if (tokens) core.tokens = tokens;
  const api = new FlyteAdminGrpc(core, Number.POSITIVE_INFINITY);
  return Object.assign(api, { close: () => session.abort() });
}

class FlyteAdminGrpc implements FlyteAdminApi {
  private readonly deadline: number;

  constructor(
    private readonly core: Core,
    budgetMs: number,
  ) {
    this.deadline = (core.o.clock ?? systemClock).now() + budgetMs;
  }

  withBudget(budgetMs: number): FlyteAdminApi {
    return new FlyteAdminGrpc(this.core, budgetMs);
  }

  async getProject(id: string): Promise<Project | undefined> {
    checkProjectId(id, 'GetProject');
    if (!this.core.noGetProject) {
      try {
        return await this.call('GetProject', false, (opts) => this.core.client.getProject({ id }, opts));
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (code === Code.NotFound) return undefined;
        if (code !== Code.Unimplemented) throw err;
        this.core.noGetProject = true;
        this.core.o.log.info('FlyteAdmin has no GetProject (older than 1.12); using ListProjects');
      }
    }
    // Filters make archived projects visible too; limit > 0 so pagination can never loop.
    const res = await this.call('ListProjects', false, (opts) =>
      this.core.client.listProjects({ filters: `eq(identifier,${id})`, limit: 1 }, opts),
    );
    return res.projects.find((p) => p.id === id);
  }

  async registerProject(project: ProjectInit): Promise<void> {
    checkProjectId(project.id, 'RegisterProject');
    await this.call('RegisterProject', true, (opts) => this.core.client.registerProject({ project }, opts));
  }

  async updateProject(project: ProjectInit): Promise<void> {
    checkProjectId(project.id, 'UpdateProject');
    await this.call('UpdateProject', true, (opts) => this.core.client.updateProject(project, opts));
  }

  async getDomains(): Promise<string[]> {
    try {
      const res = await this.call('GetDomains', false, (opts) => this.core.client.getDomains({}, opts));
      return res.domains.map((d) => d.id).filter(Boolean);
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Unimplemented) throw err;
      return [...(this.core.o.fallbackDomains ?? [])];
    }
  }

  async getProjectDomainAttributes(
    project: string,
    domain: string,
    type: MatchableResource,
  ): Promise<ProjectDomainAttributes | undefined> {
    checkProjectId(project, 'GetProjectDomainAttributes');
    try {
      const res = await this.call('GetProjectDomainAttributes', false, (opts) =>
        this.core.client.getProjectDomainAttributes({ project, domain, resourceType: type }, opts),
      );
      return res.attributes;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    }
  }

  async updateProjectDomainAttributes(project: string, domain: string, attributes: MatchingAttributes): Promise<void> {
    checkProjectId(project, 'UpdateProjectDomainAttributes');
    if (domain === '') throw refused('UpdateProjectDomainAttributes', 'an empty domain');
    await this.call('UpdateProjectDomainAttributes', true, (opts) =>
      this.core.client.updateProjectDomainAttributes(
        { attributes: { project, domain, matchingAttributes: attributes } },
        opts,
      ),
    );
  }

  async listProjects(page: MessageInitShape<typeof ProjectListRequestSchema> & { limit: number }): Promise<Projects> {
    if (!(page.limit > 0)) throw refused('ListProjects', 'limit 0 (FlyteAdmin would page forever)');
    return this.call('ListProjects', false, (opts) => this.core.client.listProjects(page, opts));
  }

  private remaining(): number {
    return this.deadline - (this.core.o.clock ?? systemClock).now();
  }

  /** One logical call: a call slot, per-attempt deadline, retries for transient codes within the budget. */
  private async call<T>(op: string, write: boolean, fn: (opts: CallOptions) => Promise<T>): Promise<T> {
    const { cfg, o, slots, tokens } = this.core;
    const maxAttempts = Math.max(1, cfg.maxAttempts);
    const baseMs = o.backoff?.baseMs ?? 200;
    const maxMs = o.backoff?.maxMs ?? 5_000;
    const random = o.random ?? Math.random;
    let reauthenticated = false;
    for (let attempt = 1; ; attempt++) {
      if (this.remaining() <= 0) throw budgetSpent(op);
      const release = await slots.acquireWithin(this.remaining());
      if (!release) throw slotsBusy(slots.max);
      let error: ConnectError;
      try {
        // Whole milliseconds: grpc-timeout must be an integer.
        const timeoutMs = Math.max(1, Math.floor(Math.min(cfg.callTimeoutMs, this.remaining())));
        return await o.stats.track(op, write, () => fn({ timeoutMs }));
      } catch (err) {
        error = ConnectError.from(err);
      } finally {
        release();
      }
      if (error.code === Code.Unauthenticated && tokens && !reauthenticated) {
        // Rotated or expired credentials: drop the cached token and try once more right away.
        reauthenticated = true;
        tokens.invalidate();
        attempt--;
        continue;
      }
      if (!isRetryableCode(error.code) || attempt >= maxAttempts) throw error;
      const delay = backoffDelayMs(attempt, baseMs, maxMs, random);
      if (delay >= this.remaining()) throw error;
      o.log.debug({ op, attempt, code: Code[error.code], delayMs: delay }, 'FlyteAdmin call failed; retrying');
      await new Promise<void>((r) => (o.clock ?? systemClock).setTimer(r, delay));
    }
  }
}

// FlyteAdmin's project id rule (k8s DNS-1123 label). The server itself accepts an empty id in attribute
// calls (it then matches whatever row comes first: another project's attributes get overwritten or
// deleted), so the client refuses before anything is sent.
const PROJECT_ID = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Throws InvalidArgument, without calling FlyteAdmin, unless `id` is a valid, non-empty project id. */
export function checkProjectId(id: string | undefined, op: string): void {
  if (id === undefined || id === '') throw refused(op, 'an empty project id');
  if (id.length > 63 || !PROJECT_ID.test(id))
    throw refused(op, `invalid project id ${JSON.stringify(id.slice(0, 80))}`);
}

function refused(op: string, what: string): ConnectError {
  return new ConnectError(`${op}: refusing to send ${what} to FlyteAdmin`, Code.InvalidArgument);
}

function slotsBusy(slots: number): ConnectError {
  return new ConnectError(
    `request budget spent waiting for one of ${slots} FlyteAdmin call slots`,
    Code.DeadlineExceeded,
  );
}

function budgetSpent(op: string): ConnectError {
  return new ConnectError(`${op}: FlyteAdmin request budget for this reconcile is spent`, Code.DeadlineExceeded);
}

// ---- Error classes -----------------------------------------------------------------------------------

/** gRPC code → reason and class; a code missing here is terminal (FlyteError). */
const FLYTE_ERRORS: Partial<Record<Code, [reason: string, cls: ErrorClass]>> = {
  [Code.Unavailable]: ['FlyteUnavailable', 'retryable'],
  [Code.DeadlineExceeded]: ['FlyteUnavailable', 'retryable'],
  [Code.ResourceExhausted]: ['FlyteUnavailable', 'retryable'],
  [Code.Aborted]: ['FlyteUnavailable', 'retryable'],
  [Code.Internal]: ['FlyteUnavailable', 'retryable'],
  [Code.Unknown]: ['FlyteUnavailable', 'retryable'],
  [Code.Canceled]: ['FlyteUnavailable', 'retryable'],
  [Code.InvalidArgument]: ['FlyteInvalidArgument', 'terminal'],
  [Code.AlreadyExists]: ['FlyteAlreadyExists', 'retryable'],
  [Code.NotFound]: ['FlyteNotFound', 'retryable'],
  // Credentials are mounted and rotate; the client already retried once with fresh ones.
  [Code.Unauthenticated]: ['FlyteUnauthenticated', 'retryable'],
  [Code.PermissionDenied]: ['FlytePermissionDenied', 'terminal'],
  [Code.Unimplemented]: ['FlyteUnsupported', 'terminal'],
};

/** A FlyteAdmin failure as a StepError: reason and class by gRPC code, the code's name kept. */
export function toFlyteError(err: unknown): StepError {
  if (err instanceof StepError) return err;
  if (!(err instanceof ConnectError)) {
    return new StepError('FlyteError', err instanceof Error ? err.message : String(err), 'retryable');
  }
  const code = Code[err.code].replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
  const message = `FlyteAdmin: ${err.rawMessage}`;
  // An archived/inactive project seen mid-flight (someone archived it): the next pass unarchives it.
  if (err.code === Code.InvalidArgument && err.findDetails(InactiveProjectSchema).length > 0) {
    return new StepError('FlyteProjectInactive', message, 'retryable', { code });
  }
  const [reason, cls] = FLYTE_ERRORS[err.code] ?? ['FlyteError', 'terminal'];
  return new StepError(reason, message, cls, { code });
}
