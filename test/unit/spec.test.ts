import { describe, expect, it } from 'vitest';
import { defaultConfig, mergeConfig } from '../../src/config/config.js';
import { maxWorkspaceIdLength } from '../../src/spec/names.js';
import { parseWorkspace, validateWorkspace } from '../../src/spec/workspace.js';

const cfg = defaultConfig();
const good = {
  workspace_id: 'ml-research',
  workspace_name: 'ML Research',
  users: [
    { user_id: 'u1', email: 'alice@example.com', role: 'owner' },
    { user_id: 'u2', email: 'bob@example.com', role: 'contributor' },
  ],
  data_bucket: 'ml-research-data',
  services: ['flyte', 'sagemaker'],
};

function errorsOf(doc: unknown, c = cfg) {
  const r = validateWorkspace(doc, c);
  if (r.ok) throw new Error('expected validation errors');
  return r.errors.map((e) => `${e.field}: ${e.message}`);
}

describe('workspace.json parsing', () => {
  it('accepts the seed document in both services forms and ignores unknown fields', () => {
    const a = validateWorkspace(good, cfg);
    const b = validateWorkspace(
      { ...good, services: [{ service_type: 'flyte', config: {} }, { service_type: 'sagemaker' }], extra: { x: 1 } },
      cfg,
    );
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(a.spec.flyteEnabled).toBe(true);
    expect(a.spec.services).toEqual(['flyte', 'sagemaker']);
    expect(b.spec.services).toEqual(['flyte', 'sagemaker']);
    expect(a.spec.tier).toBe('default');
    // Same normalized spec → same hash, whatever the document's shape.
    expect(a.specHash).toBe(b.specHash);
  });

  it('names the exact field at fault', () => {
    const doc = structuredClone(good) as Record<string, unknown>;
    (doc.users as { role: string }[]).push({ user_id: 'u3', email: 'c@example.com', role: 'admin' } as never);
    expect(errorsOf(doc)).toEqual(['users[2].role: must be owner or contributor']);
  });

  it('reports invalid JSON, wrong types and missing fields', () => {
    const r = parseWorkspace('{"workspace_id": ', cfg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]?.message).toMatch(/^invalid JSON/);
    expect(parseWorkspace(undefined, cfg).ok).toBe(false);
    expect(errorsOf({ ...good, users: 'alice' })).toEqual(['users: must be an array, got string']);
    expect(errorsOf({ ...good, workspace_id: 7 })).toContain('workspace_id: must be a string, got number');
    const { data_bucket: _omit, ...noBucket } = good;
    expect(errorsOf(noBucket)).toEqual(['data_bucket: is required']);
    expect(errorsOf([])[0]).toMatch(/^\(root\): must be a JSON object/);
  });

  it('rejects ids that are not DNS labels, too long, or reserved', () => {
    expect(errorsOf({ ...good, workspace_id: 'ML' })[0]).toMatch(/DNS-1123/);
    expect(errorsOf({ ...good, workspace_id: 'a.b' })[0]).toMatch(/DNS-1123/);
    expect(errorsOf({ ...good, workspace_id: '../etc' })[0]).toMatch(/DNS-1123/);
    expect(errorsOf({ ...good, workspace_id: 'kube-system', data_bucket: 'kube-system-data' })[0]).toMatch(/reserved/);
    const long = 'a'.repeat(60);
    expect(errorsOf({ ...good, workspace_id: long, data_bucket: 'x-data' }).join()).toMatch(/at most \d+ fit/);
  });

  it('computes the id length limit from the configured templates', () => {
    // Default: FlyteWorkspace-<id>-Role (64) is tighter than flyte-<id> (63).
    expect(maxWorkspaceIdLength(cfg)).toEqual({ max: 64 - 'FlyteWorkspace--Role'.length, boundBy: 'IAM role name' });
    const perDomain = mergeConfig(cfg, { names: { namespacePerDomain: true, iamRole: 'r-{{ workspace_id }}' } });
    expect(maxWorkspaceIdLength(perDomain)).toEqual({
      max: 63 - '-development'.length,
      boundBy: 'namespace for domain development',
    });
  });

  it('rejects duplicate users, missing owner and bad emails', () => {
    const dup = { ...good, users: [...good.users, { user_id: 'u1', email: 'z@example.com', role: 'owner' }] };
    expect(errorsOf(dup)).toEqual(['users[2].user_id: duplicate of users[0].user_id "u1"']);
    const noOwner = { ...good, users: [{ user_id: 'u2', email: 'bob@example.com', role: 'contributor' }] };
    expect(errorsOf(noOwner)).toEqual(['users: must include at least one owner']);
    expect(errorsOf({ ...good, users: [] })).toEqual(['users: must list at least one owner']);
    const badEmail = { ...good, users: [{ user_id: 'u1', email: 'alice at example', role: 'owner' }] };
    expect(errorsOf(badEmail)[0]).toMatch(/^users\[0\]\.email/);
  });

  it('only grants buckets of this workspace, never ARNs', () => {
    expect(errorsOf({ ...good, data_bucket: 'finance-data' })[0]).toMatch(/not a bucket of this workspace/);
    expect(errorsOf({ ...good, data_bucket: 'arn:aws:s3:::ml-research-data' })[0]).toMatch(/not an ARN/);
  });

  it('refuses prototype-pollution keys and control characters', () => {
    const doc = JSON.parse(`{"workspace_id":"ml-research","__proto__":{"polluted":true}}`);
    expect(errorsOf({ ...good, ...doc }).join()).toMatch(/__proto__: forbidden key/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(errorsOf({ ...good, workspace_name: 'a\u0000b' })[0]).toMatch(/^workspace_name: must not contain control/);
  });

  it('limits document size and unknown tiers', () => {
    const big = JSON.stringify({ ...good, pad: 'x'.repeat(cfg.limits.maxDocumentBytes) });
    const r = parseWorkspace(big, cfg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]?.message).toMatch(/bytes, more than the limit/);
    expect(errorsOf({ ...good, tier: 'gold' })[0]).toMatch(/^tier: unknown tier "gold"/);
  });
});
