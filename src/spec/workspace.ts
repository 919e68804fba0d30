// Parses and validates workspace.json into a typed spec. Pure: no I/O. Every error names the exact field,
// so the platform team can fix the document from the Warning Event alone.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { ControllerConfig } from '../config/config.js';
import { childPath, parseStrictJson, quote } from './json.js';
import { maxWorkspaceIdLength, type NamingConfig, workspaceNames } from './names.js';

export type WorkspaceRole = 'owner' | 'contributor';

export interface WorkspaceUser {
  userId: string;
  email: string;
  role: WorkspaceRole;
}

export interface WorkspaceSpec {
  workspaceId: string;
  workspaceName: string;
  ownerEmail?: string;
  users: WorkspaceUser[];
  dataBucket: string;
  /** Service types, lower-cased and de-duplicated, in document order. */
  services: string[];
  flyteEnabled: boolean;
  /** The `config` object of the flyte service entry, if any (not acted upon yet; kept for status). */
  flyteServiceConfig: Record<string, unknown>;
  tier: string;
}

export interface FieldError {
  field: string;
  message: string;
}

export type ParseResult = { ok: true; spec: WorkspaceSpec; specHash: string } | { ok: false; errors: FieldError[] };

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const USER_ID = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const SERVICE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: detecting control characters is the point
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
/** Keys the schema reads (at any level): a key that only becomes one of these after normalisation is refused. */
const SCHEMA_KEYS = new Set([
  'workspace_id',
  'workspace_name',
  'owner_email',
  'users',
  'user_id',
  'email',
  'role',
  'data_bucket',
  'services',
  'service_type',
  'config',
  'tier',
]);
const MAX_DEPTH = 32;
const KNOWN_ROLES: readonly WorkspaceRole[] = ['owner', 'contributor'];

/** The namespaces the controller itself knows of, which no workspace may take. */
export interface ReservedNamespacesConfig
  extends Pick<
    ControllerConfig,
    'flyteSystemNamespace' | 'controllerNamespace' | 'sourceNamespaces' | 'reservedNamespaces'
  > {
  leaderElection: Pick<ControllerConfig['leaderElection'], 'namespace'>;
}

/** What parsing and validating a workspace document reads: the key, the limits, tiers, buckets and names. */
export type SpecConfig = NamingConfig &
  ReservedNamespacesConfig &
  Pick<ControllerConfig, 'configMapKey' | 'limits' | 'defaultTier' | 'tiers' | 'bucketPatterns'>;

/** Names of namespaces no workspace may ever map onto, whatever the templates say. */
export function reservedNamespaces(cfg: ReservedNamespacesConfig): Set<string> {
  return new Set([
    'default',
    'kube-system',
    'kube-public',
    'kube-node-lease',
    cfg.flyteSystemNamespace,
    cfg.controllerNamespace,
    cfg.leaderElection.namespace,
    ...cfg.sourceNamespaces.filter((n) => n !== '*'),
    ...cfg.reservedNamespaces,
  ]);
}

/**
 * The workspace document of a ConfigMap: the `data` text, or the raw bytes when it is under `binaryData`
 * (where `kubectl create configmap --from-file` puts a file that is not valid UTF-8), undefined if neither.
 */
export function workspaceDocument(cm: { readonly [field: string]: unknown }, key: string): WorkspaceDocument {
  const text = (cm.data as Record<string, string> | undefined)?.[key];
  if (text !== undefined) return text;
  const base64 = (cm.binaryData as Record<string, string> | undefined)?.[key];
  return base64 === undefined ? undefined : Buffer.from(base64, 'base64');
}

/** `workspace.json` as text (ConfigMap `data`), as bytes (`binaryData`, files), or undefined when missing. */
export type WorkspaceDocument = string | Uint8Array | undefined;

/**
 * Parses `workspace.json` (undefined when the key is missing) strictly: a document any other JSON reader could
 * read differently (see json.ts) is refused with the path at fault. Where invalid UTF-8 can reach us:
 * ConfigMap `data` is text the API server has already decoded: a server-side apply body (YAML) with invalid
 * UTF-8 or a lone surrogate is refused with a 400, a JSON body's are stored as U+FFFD (refused by the
 * reader). Bytes arrive intact only from `binaryData` and from files (the CLI), and are checked here,
 * naming the offset of the first bad byte.
 */
export function parseWorkspace(raw: WorkspaceDocument, cfg: SpecConfig): ParseResult {
  const key = cfg.configMapKey;
  if (raw === undefined) return fail(key, 'missing key in ConfigMap data');
  const bytes = typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : raw.byteLength;
  if (bytes > cfg.limits.maxDocumentBytes) {
    return fail(key, `document is ${bytes} bytes, more than the limit of ${cfg.limits.maxDocumentBytes}`);
  }
  let text: string;
  if (typeof raw === 'string') text = raw;
  else {
    if (!isUtf8(raw)) return fail(key, `is not valid UTF-8: invalid byte sequence at byte ${firstInvalidUtf8(raw)}`);
    text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
  }
  const parsed = parseStrictJson(text, { maxDepth: MAX_DEPTH, checkKey });
  if (!parsed.ok) {
    return parsed.path === undefined
      ? fail(key, `invalid JSON: ${parsed.message}`)
      : fail(parsed.path || '(root)', parsed.message);
  }
  // The reader already refused forbidden keys and deep nesting.
  return validateFields(parsed.value, cfg, false);
}

function checkKey(key: string, normalized: string): string | undefined {
  if (FORBIDDEN_KEYS.has(normalized)) return 'forbidden key (prototype pollution attempt)';
  if (normalized !== key && SCHEMA_KEYS.has(normalized)) {
    return `key ${quote(key)} reads as "${normalized}" after Unicode normalisation (NFKC); write "${normalized}"`;
  }
  return undefined;
}

/** Index of the first byte that does not start or continue a valid UTF-8 sequence (RFC 3629). */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i] as number;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min = 0x80;
    let max = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) min = 0xa0; // overlong
      if (c === 0xed) max = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) min = 0x90; // overlong
      if (c === 0xf4) max = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? min : 0x80) || d > (k === 1 ? max : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** Validates an already parsed document (a JavaScript value, not text). */
export function validateWorkspace(doc: unknown, cfg: SpecConfig): ParseResult {
  return validateFields(doc, cfg, true);
}

function validateFields(doc: unknown, cfg: SpecConfig, checkKeys: boolean): ParseResult {
  const errors: FieldError[] = [];
  const err = (field: string, message: string) => errors.push({ field, message });
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return fail('(root)', `must be a JSON object, got ${describe(doc)}`);
  }
  if (checkKeys) findForbiddenKeys(doc, '', err);
  const o = doc as Record<string, unknown>;

  const workspaceId = requireString(o, 'workspace_id', err);
  if (workspaceId !== undefined) validateWorkspaceId(workspaceId, cfg, err);

  const workspaceName = requireString(o, 'workspace_name', err);
  if (workspaceName !== undefined) validateText('workspace_name', workspaceName, cfg.limits.maxStringLength, err);

  let ownerEmail: string | undefined;
  if (o.owner_email !== undefined && o.owner_email !== null) {
    if (typeof o.owner_email !== 'string') err('owner_email', `must be a string, got ${describe(o.owner_email)}`);
    else if (!isEmail(o.owner_email)) err('owner_email', 'must be an email address');
    else ownerEmail = o.owner_email;
  }

  const users = validateUsers(o.users, cfg, err);

  const dataBucket = requireString(o, 'data_bucket', err);
  if (dataBucket !== undefined && workspaceId !== undefined) validateBucket(dataBucket, workspaceId, cfg, err);

  const { services, flyteServiceConfig } = validateServices(o.services, err);

  let tier = cfg.defaultTier;
  if (o.tier !== undefined && o.tier !== null) {
    if (typeof o.tier !== 'string') err('tier', `must be a string, got ${describe(o.tier)}`);
    else if (!Object.hasOwn(cfg.tiers, o.tier)) {
      err('tier', `unknown tier "${clip(o.tier)}"; known tiers: ${Object.keys(cfg.tiers).join(', ')}`);
    } else tier = o.tier;
  }

  if (errors.length > 0) return { ok: false, errors };
  const spec: WorkspaceSpec = {
    workspaceId: workspaceId as string,
    workspaceName: workspaceName as string,
    users,
    dataBucket: dataBucket as string,
    services,
    flyteEnabled: services.includes('flyte'),
    flyteServiceConfig,
    tier,
  };
  if (ownerEmail !== undefined) spec.ownerEmail = ownerEmail;
  return { ok: true, spec, specHash: hashSpec(spec) };
}

/** Stable hash of the normalized spec: formatting or key order changes in the document do not change it. */
export function hashSpec(spec: WorkspaceSpec): string {
  return createHash('sha256').update(stableStringify(spec)).digest('hex').slice(0, 16);
}

export function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

function validateWorkspaceId(
  id: string,
  cfg: NamingConfig & ReservedNamespacesConfig,
  err: (f: string, m: string) => void,
): void {
  const f = 'workspace_id';
  if (id.length === 0) {
    err(f, 'must not be empty');
    return;
  }
  if (CONTROL_CHARS.test(id)) {
    err(f, 'must not contain control characters');
    return;
  }
  if (!DNS1123_LABEL.test(id)) {
    err(
      f,
      `"${clip(id)}" must be a DNS-1123 label: lower-case letters, digits and "-", starting and ending with a letter or digit`,
    );
    return;
  }
  const { max, boundBy } = maxWorkspaceIdLength(cfg);
  if (id.length > max) {
    err(f, `is ${id.length} characters; at most ${max} fit in the ${boundBy}`);
    return;
  }
  const reserved = reservedNamespaces(cfg);
  if (reserved.has(id) || id.startsWith('kube-')) {
    err(f, `"${id}" is a reserved name`);
    return;
  }
  for (const ns of workspaceNames(cfg, id).namespaces) {
    if (reserved.has(ns) || ns.startsWith('kube-')) {
      err(f, `maps to namespace "${ns}", which is reserved for the system`);
      return;
    }
  }
}

function validateUsers(
  v: unknown,
  cfg: Pick<ControllerConfig, 'limits'>,
  err: (f: string, m: string) => void,
): WorkspaceUser[] {
  if (v === undefined || v === null) {
    err('users', 'is required');
    return [];
  }
  if (!Array.isArray(v)) {
    err('users', `must be an array, got ${describe(v)}`);
    return [];
  }
  if (v.length === 0) {
    err('users', 'must list at least one owner');
    return [];
  }
  if (v.length > cfg.limits.maxUsers) {
    err('users', `has ${v.length} entries, more than the limit of ${cfg.limits.maxUsers}`);
    return [];
  }
  const users: WorkspaceUser[] = [];
  // Compared as they are (emails case-insensitively): both patterns admit ASCII only, so two spellings
  // cannot differ by Unicode normalisation or case folding beyond ASCII.
  const seenIds = new Map<string, number>();
  const seenEmails = new Map<string, number>();
  let badEntries = 0;
  v.forEach((u, i) => {
    const p = `users[${i}]`;
    if (typeof u !== 'object' || u === null || Array.isArray(u)) {
      badEntries++;
      err(p, `must be an object, got ${describe(u)}`);
      return;
    }
    const rec = u as Record<string, unknown>;
    const before = users.length;
    const userId = requireString(rec, 'user_id', err, p);
    const email = requireString(rec, 'email', err, p);
    const role = requireString(rec, 'role', err, p);
    let ok = userId !== undefined && email !== undefined && role !== undefined;
    if (userId !== undefined && !USER_ID.test(userId)) {
      ok = false;
      err(`${p}.user_id`, 'must be 1-128 characters of letters, digits and . _ @ + -, starting with a letter or digit');
    }
    if (email !== undefined && !isEmail(email)) {
      ok = false;
      err(`${p}.email`, `"${clip(email)}" is not an email address`);
    }
    if (role !== undefined && !KNOWN_ROLES.includes(role as WorkspaceRole)) {
      ok = false;
      err(`${p}.role`, 'must be owner or contributor');
    }
    if (userId !== undefined && seenIds.has(userId)) {
      ok = false;
      err(`${p}.user_id`, `duplicate of users[${seenIds.get(userId)}].user_id "${clip(userId)}"`);
    } else if (userId !== undefined) seenIds.set(userId, i);
    const emailKey = email?.toLowerCase();
    if (emailKey !== undefined && seenEmails.has(emailKey)) {
      ok = false;
      err(`${p}.email`, `duplicate of users[${seenEmails.get(emailKey)}].email`);
    } else if (emailKey !== undefined) seenEmails.set(emailKey, i);
    if (ok && users.length === before) {
      users.push({ userId: userId as string, email: email as string, role: role as WorkspaceRole });
    } else badEntries++;
  });
  if (badEntries === 0 && !users.some((u) => u.role === 'owner')) err('users', 'must include at least one owner');
  return users;
}

function validateBucket(
  bucket: string,
  workspaceId: string,
  cfg: Pick<ControllerConfig, 'bucketPatterns'>,
  err: (f: string, m: string) => void,
) {
  const f = 'data_bucket';
  if (bucket.startsWith('arn:')) {
    err(f, 'must be a bucket name, not an ARN');
    return;
  }
  if (bucket.startsWith('s3://')) {
    err(f, 'must be a bucket name, not an s3:// URL');
    return;
  }
  if (
    bucket.length < 3 ||
    bucket.length > 63 ||
    !/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(bucket) ||
    bucket.includes('..') ||
    /^\d+\.\d+\.\d+\.\d+$/.test(bucket)
  ) {
    err(f, `"${clip(bucket)}" is not a valid S3 bucket name`);
    return;
  }
  const allowed = cfg.bucketPatterns.map((p) => p.replace(/\{\{\s*workspace_id\s*\}\}/g, workspaceId));
  if (!allowed.some((p) => globMatch(p, bucket))) {
    err(f, `"${bucket}" is not a bucket of this workspace (allowed: ${allowed.join(', ')})`);
  }
}

function validateServices(
  v: unknown,
  err: (f: string, m: string) => void,
): { services: string[]; flyteServiceConfig: Record<string, unknown> } {
  const services: string[] = [];
  let flyteServiceConfig: Record<string, unknown> = {};
  if (v === undefined || v === null) {
    err('services', 'is required (use [] for none)');
    return { services, flyteServiceConfig };
  }
  if (!Array.isArray(v)) {
    err('services', `must be an array, got ${describe(v)}`);
    return { services, flyteServiceConfig };
  }
  if (v.length > 64) {
    err('services', `has ${v.length} entries, more than the limit of 64`);
    return { services, flyteServiceConfig };
  }
  v.forEach((s, i) => {
    const p = `services[${i}]`;
    let type: unknown;
    let config: unknown;
    if (typeof s === 'string') type = s;
    else if (typeof s === 'object' && s !== null && !Array.isArray(s)) {
      type = (s as Record<string, unknown>).service_type;
      config = (s as Record<string, unknown>).config;
      if (type === undefined) {
        err(`${p}.service_type`, 'is required');
        return;
      }
      if (typeof type !== 'string') {
        err(`${p}.service_type`, `must be a string, got ${describe(type)}`);
        return;
      }
      if (config !== undefined && config !== null && (typeof config !== 'object' || Array.isArray(config))) {
        err(`${p}.config`, `must be an object, got ${describe(config)}`);
        return;
      }
    } else {
      err(p, `must be a string or an object with service_type, got ${describe(s)}`);
      return;
    }
    // Trimmed and lower-cased as ASCII only: Unicode case folding turns e.g. the Kelvin sign into "k", so a
    // name other readers take literally would match a service here.
    const trimmed = (type as string).replace(/^[ \t]+|[ \t]+$/g, '');
    const name = /^[\x21-\x7e]*$/.test(trimmed) ? trimmed.toLowerCase() : '';
    if (!SERVICE.test(name)) {
      err(typeof s === 'string' ? p : `${p}.service_type`, `"${clip(String(type))}" is not a service name`);
      return;
    }
    if (!services.includes(name)) services.push(name);
    if (name === 'flyte' && config) flyteServiceConfig = config as Record<string, unknown>;
  });
  return { services, flyteServiceConfig };
}

function requireString(
  o: Record<string, unknown>,
  key: string,
  err: (f: string, m: string) => void,
  prefix = '',
): string | undefined {
  const f = prefix ? `${prefix}.${key}` : key;
  const v = Object.hasOwn(o, key) ? o[key] : undefined;
  if (v === undefined || v === null) {
    err(f, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') {
    err(f, `must be a string, got ${describe(v)}`);
    return undefined;
  }
  if (v.trim().length === 0) {
    err(f, 'must not be empty');
    return undefined;
  }
  if (CONTROL_CHARS.test(v)) {
    err(f, 'must not contain control or bidirectional-override characters');
    return undefined;
  }
  return v;
}

function validateText(field: string, v: string, max: number, err: (f: string, m: string) => void) {
  if ([...v].length > max) err(field, `is ${[...v].length} characters, more than the limit of ${max}`);
}

function findForbiddenKeys(v: unknown, path: string, err: (f: string, m: string) => void, depth = 0): void {
  if (depth > MAX_DEPTH) {
    err(path || '(root)', `is nested more than ${MAX_DEPTH} levels deep`);
    return;
  }
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) findForbiddenKeys(x, `${path}[${i}]`, err, depth + 1);
  } else if (v && typeof v === 'object') {
    for (const k of Object.keys(v)) {
      const p = childPath(path, k);
      if (FORBIDDEN_KEYS.has(k)) err(p, 'forbidden key (prototype pollution attempt)');
      else findForbiddenKeys((v as Record<string, unknown>)[k], p, err, depth + 1);
    }
  }
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map(escapeRegex).join('[a-z0-9.-]*')}$`);
  return re.test(value);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function isEmail(s: string): boolean {
  return s.length <= 254 && EMAIL.test(s);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v}`;
}

/** Cuts user-provided text quoted in error messages so a hostile document cannot flood status or events. */
function clip(s: string, max = 64): string {
  const safe = s.replace(CONTROL_CHARS, '?');
  return safe.length > max ? `${safe.slice(0, max)}…` : safe;
}

function fail(field: string, message: string): ParseResult {
  return { ok: false, errors: [{ field, message }] };
}

export function formatFieldErrors(errors: FieldError[], max = 10): string {
  const shown = errors.slice(0, max).map((e) => `${e.field}: ${e.message}`);
  if (errors.length > max) shown.push(`and ${errors.length - max} more`);
  return shown.join('; ');
}
