// Per-domain namespaces ({{ project }}-{{ domain }}, Flyte's own mapping) end to end: contributors are
// bound only in development and staging, owners everywhere, each namespace's context ConfigMap defaults to
// its domain, and the IAM trust policy names the runner ServiceAccount of every namespace.
import { GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Fixture,
  inject,
  MOTO_CREDENTIALS,
  putWorkspace,
  startFixtureWithIam,
  waitForStatus,
  workspaceDoc,
} from '../support/controller-fixture.js';
import { uniqueName } from '../support/kube.js';

let f: Fixture;
let iam: IAMClient;

beforeAll(async () => {
  iam = new IAMClient({ region: 'us-east-1', endpoint: inject('motoEndpoint'), credentials: MOTO_CREDENTIALS });
  f = await startFixtureWithIam({ names: { namespacePerDomain: true } });
});
afterAll(async () => {
  await f?.stop();
});

describe('one namespace per Flyte domain', () => {
  it('binds contributors only where allowed, sets each context to its domain, trusts every runner ServiceAccount', async () => {
    const id = uniqueName('pd');
    await putWorkspace(f, `${id}-cfg`, workspaceDoc(id));
    const status = await waitForStatus(f, `${id}-cfg`, (s) => s.phase === 'Ready');
    const namespaces = ['development', 'staging', 'production'].map((d) => `${id}-${d}`);
    expect([...(status.namespaces ?? [])].sort()).toEqual([...namespaces].sort());

    for (const ns of namespaces) {
      const roles = (await f.admin.list('RoleBinding', { namespace: ns }))
        .map((rb) => rb.metadata.labels?.['workspaces.flyte.org/role'])
        .sort();
      expect(roles, ns).toEqual(ns.endsWith('production') ? ['owner'] : ['contributor', 'owner']);
      const nsObj = await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns });
      expect(nsObj?.metadata.labels?.['workspaces.flyte.org/domain']).toBe(ns.slice(id.length + 1));
      // Each namespace's context defaults to its own domain.
      const context = await f.admin.get({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        namespace: ns,
        name: 'flyte-workspace-context',
      });
      expect(context?.data, ns).toMatchObject({
        FLYTE_DEFAULT_PROJECT: id,
        FLYTE_DEFAULT_DOMAIN: ns.slice(id.length + 1),
        WORKSPACE_ID: id,
      });
      expect(((context?.data ?? {}) as Record<string, string>)['config.yaml']).toContain(
        `domain: "${ns.slice(id.length + 1)}"`,
      );
    }

    const role = (await iam.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role;
    const trust = JSON.parse(decodeURIComponent(role?.AssumeRolePolicyDocument ?? '{}')) as {
      Statement: { Condition?: Record<string, Record<string, string | string[]>> }[];
    };
    const subjects = trust.Statement.flatMap((s) =>
      Object.entries(s.Condition?.StringEquals ?? {})
        .filter(([k]) => k.endsWith(':sub'))
        .flatMap(([, v]) => (Array.isArray(v) ? v : [v])),
    );
    expect(subjects.sort()).toEqual(namespaces.map((ns) => `system:serviceaccount:${ns}:flyte-${id}-runner`).sort());
  });
});
