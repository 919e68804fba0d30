// IAM policy documents: parsing (IAM returns them URL-encoded, moto sometimes not) and a canonical form for
// semantic comparison, so that a document IAM hands back reformatted, or one a person reordered, never
// looks like drift. Comparing raw strings is what gave ACK its perpetual diffs and write storms.
// Pure: no I/O.
import { stableStringify } from '../spec/workspace.js';

export type ConditionValue = string | number | boolean | (string | number | boolean)[];
export type Principal = '*' | Record<string, string | string[]>;

export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Principal?: Principal;
  NotPrincipal?: Principal;
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: Record<string, Record<string, ConditionValue>>;
}

export interface PolicyDocument {
  Version?: string;
  Id?: string;
  Statement: PolicyStatement | PolicyStatement[];
}

export class PolicyParseError extends Error {
  override name = 'PolicyParseError';
}

/** The policy language version IAM assumes when a document has none. */
const IMPLICIT_VERSION = '2008-10-17';

/**
 * JSON text of a policy as IAM or moto returned it: URL-encoded (GetRole, GetRolePolicy, real AWS
 * everywhere) or plain (moto's GetPolicyVersion/ListRoles). Plain JSON always starts with `{`.
 */
export function decodePolicyText(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return trimmed;
  try {
    return decodeURIComponent(trimmed).trim();
  } catch {
    throw new PolicyParseError('policy document is neither JSON nor URL-encoded JSON');
  }
}

/** Parses a policy given as (URL-encoded or plain) JSON text, or passes an object through. */
export function parsePolicy(input: string | object): unknown {
  if (typeof input !== 'string') return input;
  const text = decodePolicyText(input);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new PolicyParseError(`policy document is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Canonical form of a policy document. Differences that IAM does not give meaning to disappear:
 * key order; statement order and duplicates; a single value vs a one-element array; order and duplicates
 * inside Action/Resource/Principal/condition-value lists; the case of action names and condition keys
 * (both case-insensitive in IAM); `"Principal": "*"` vs `{"AWS": "*"}`; an account id vs its root ARN;
 * condition values given as booleans or numbers vs strings; a missing Version (IAM's default).
 * Everything else (Effect, Sid, resource ARNs, condition operators and values) is compared as written.
 */
export function normalizePolicy(input: string | object, opts: { partition?: string } = {}): Record<string, unknown> {
  const doc = parsePolicy(input);
  if (!isObject(doc)) throw new PolicyParseError('policy document must be a JSON object');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'Statement') continue;
    out[k] = v;
  }
  out.Version = typeof doc.Version === 'string' ? doc.Version : IMPLICIT_VERSION;
  const raw = doc.Statement;
  if (raw === undefined) throw new PolicyParseError('policy document has no Statement');
  const statements = (Array.isArray(raw) ? raw : [raw]).map((s, i) => {
    if (!isObject(s)) throw new PolicyParseError(`Statement[${i}] must be an object`);
    return normalizeStatement(s, opts.partition ?? 'aws');
  });
  const unique = new Map(statements.map((s) => [stableStringify(s), s]));
  out.Statement = [...unique.keys()].sort().map((k) => unique.get(k));
  return out;
}

/** Stable text of the canonical form: equal text ⇔ semantically equal (in the sense above). */
export function canonicalPolicy(input: string | object, opts: { partition?: string } = {}): string {
  return stableStringify(normalizePolicy(input, opts));
}

/** Semantic equality; a document that cannot be parsed equals nothing (so it gets rewritten). */
export function policiesEqual(a: string | object, b: string | object, opts: { partition?: string } = {}): boolean {
  try {
    return canonicalPolicy(a, opts) === canonicalPolicy(b, opts);
  } catch (err) {
    if (err instanceof PolicyParseError) return false;
    throw err;
  }
}

function normalizeStatement(s: Record<string, unknown>, partition: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    switch (k) {
      case 'Action':
      case 'NotAction':
        out[k] = stringSet(v, k, (x) => x.toLowerCase());
        break;
      case 'Resource':
      case 'NotResource':
        out[k] = stringSet(v, k);
        break;
      case 'Principal':
      case 'NotPrincipal':
        out[k] = normalizePrincipal(v, k, partition);
        break;
      case 'Condition':
        out[k] = normalizeCondition(v);
        break;
      default:
        out[k] = v;
    }
  }
  return out;
}

function normalizePrincipal(v: unknown, field: string, partition: string): Record<string, string[]> {
  if (v === '*') return { AWS: ['*'] };
  if (!isObject(v)) throw new PolicyParseError(`${field} must be "*" or an object`);
  const out: Record<string, string[]> = {};
  for (const [type, ids] of Object.entries(v)) {
    out[type] = stringSet(ids, `${field}.${type}`, (id) =>
      type === 'AWS' && /^[0-9]{12}$/.test(id) ? `arn:${partition}:iam::${id}:root` : id,
    );
  }
  return out;
}

function normalizeCondition(v: unknown): Record<string, Record<string, string[]>> {
  if (!isObject(v)) throw new PolicyParseError('Condition must be an object');
  const out: Record<string, Record<string, string[]>> = {};
  for (const [operator, block] of Object.entries(v)) {
    if (!isObject(block)) throw new PolicyParseError(`Condition.${operator} must be an object`);
    const keys: Record<string, string[]> = {};
    for (const [key, values] of Object.entries(block)) {
      // Condition keys are case-insensitive. Two spellings of one key in one block are two separate
      // (AND-ed) tests, so keep them apart instead of merging their values.
      let k = key.toLowerCase();
      if (Object.hasOwn(keys, k)) k = `${k}\u0000${key}`;
      keys[k] = stringSet(values, `Condition.${operator}.${key}`);
    }
    out[operator] = keys;
  }
  return out;
}

function stringSet(v: unknown, field: string, map: (s: string) => string = (s) => s): string[] {
  const list = Array.isArray(v) ? v : [v];
  const out = new Set<string>();
  for (const item of list) {
    if (typeof item === 'string') out.add(map(item));
    else if (typeof item === 'number' || typeof item === 'boolean') out.add(map(String(item)));
    else throw new PolicyParseError(`${field} must be a string or a list of strings`);
  }
  return [...out].sort();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
