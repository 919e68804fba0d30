// Every document in manifests/ is accepted by a real kube-apiserver: server-side apply with dryRun=All as
// admin, so schema (unknown fields are errors in server-side apply), defaulting and admission all run and
// nothing is persisted. The documents are what users apply: the output of `kustomize build` (the pinned
// kustomize, scripts/build-kustomize.sh) of every kustomization in manifests/, plus the files meant to be
// applied on their own. ServiceMonitor and PrometheusRule are checked against the published
// prometheus-operator CRDs, taken from the prometheus-operator Go module (example/prometheus-operator-crd/)
// through the Go toolchain, and installed for real first. The Deployment's pod template is also checked
// against the `restricted` Pod Security Standard the namespace manifest enforces.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import {
  ApiextensionsV1Api,
  HttpMethod,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  RequestContext,
  type V1Deployment,
} from '@kubernetes/client-node';
import { type Dispatcher, fetch } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeError, kubeConfigFor, statusOf, uniqueName, waitFor } from '../support/kube.js';
import { ROOT } from './daemon-helpers.js';

const MANIFESTS = join(ROOT, 'manifests');
const PROMETHEUS_OPERATOR = { module: 'github.com/prometheus-operator/prometheus-operator', version: 'v0.85.0' };
const CRD_DIR = 'example/prometheus-operator-crd';
const CRDS: Record<string, string> = {
  ServiceMonitor: 'monitoring.coreos.com_servicemonitors.yaml',
  PrometheusRule: 'monitoring.coreos.com_prometheusrules.yaml',
};
const FIELD_MANAGER = 'manifest-dry-run';
/** Files no kustomization installs, applied on their own (manifests/kustomization.yaml says so). */
const STANDALONE = ['example-workspace.yaml'];

// The documents exactly as written. client-node's loadAllYaml maps known kinds onto its typed models,
// which silently drops unknown (e.g. misspelt) fields and renames others; js-yaml, the parser client-node
// itself uses (loaded through it, so it needs no dependency of its own), keeps the raw structure.
const requireFromClientNode = createRequire(createRequire(import.meta.url).resolve('@kubernetes/client-node'));
const { loadAll } = requireFromClientNode('js-yaml') as { loadAll(text: string): unknown[] };
const loadAllRaw = (text: string) => loadAll(text).filter((d): d is KubernetesObject => !!d && typeof d === 'object');

interface Doc {
  file: string;
  doc: KubernetesObject;
}

const describeDoc = (d: Doc) =>
  `${d.file}: ${d.doc.kind} ${d.doc.metadata?.namespace ? `${d.doc.metadata.namespace}/` : ''}${d.doc.metadata?.name}`;

/** Every YAML file under manifests/, relative to it. */
function yamlFiles(dir = MANIFESTS): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
}

/** scripts/build-kustomize.sh (a no-op once built; `npm test` exports KUSTOMIZE) → the binary's path. */
function kustomizeBinary(): string {
  return execFileSync('bash', [join(ROOT, 'scripts', 'build-kustomize.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 600_000,
  })
    .trim()
    .split('\n')
    .pop() as string;
}

function kustomizeBuild(dir: string): KubernetesObject[] {
  return loadAllRaw(
    execFileSync(kustomizeBinary(), ['build', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
  );
}

const kustomizationDirs = () =>
  yamlFiles()
    .filter((f) => f.endsWith('kustomization.yaml'))
    .map((f) => join(MANIFESTS, dirname(f)));

/** The files each kustomization lists as resources (absolute paths). */
function kustomizationResources(): Set<string> {
  const out = new Set<string>();
  for (const dir of kustomizationDirs()) {
    const k = loadAllRaw(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0] as { resources?: string[] };
    for (const r of k.resources ?? []) out.add(resolve(dir, r));
  }
  return out;
}

function manifestDocs(): Doc[] {
  const built = kustomizationDirs().flatMap((dir) =>
    kustomizeBuild(dir).map((doc) => ({ file: `kustomize build ${relative(ROOT, dir)}`, doc })),
  );
  const standalone = STANDALONE.flatMap((file) =>
    loadAllRaw(readFileSync(join(MANIFESTS, file), 'utf8')).map((doc) => ({ file, doc })),
  );
  return [...built, ...standalone];
}

/** The CRD files of the pinned prometheus-operator module, via `go mod download` (module cache). */
function prometheusOperatorCrds(): Record<string, string> {
  let out: string;
  try {
    out = execFileSync(
      'go',
      ['mod', 'download', '-json', `${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version}`],
      {
        cwd: tmpdir(),
        encoding: 'utf8',
        env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
      },
    );
  } catch (e) {
    const err = e as { message: string; stderr?: string; stdout?: string };
    throw new Error(
      `cannot get the prometheus-operator CRDs with \`go mod download ${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version}\` ` +
        `(Go is a prerequisite, see README): ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`,
    );
  }
  const dir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download gave no module directory: ${out}`);
  return Object.fromEntries(Object.entries(CRDS).map(([kind, f]) => [kind, join(dir, CRD_DIR, f)]));
}

// Exposes the resource path KubernetesObjectApi resolves by discovery (works for CRDs too).
class ResourcePaths extends KubernetesObjectApi {
  pathOf(doc: KubernetesObject): Promise<string> {
    return this.specUriPath(structuredClone(doc), 'patch');
  }
}

class ApplyError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Server-side apply of the document exactly as written (raw JSON: client-node's typed models would drop
 * unknown fields before the server could reject them), with fieldValidation=Strict.
 */
async function ssa(kc: KubeConfig, doc: KubernetesObject, dryRun?: 'All'): Promise<KubernetesObject> {
  const server = kc.getCurrentCluster()?.server as string;
  const path = await kc.makeApiClient(ResourcePaths).pathOf(doc);
  const q = new URLSearchParams({ fieldManager: FIELD_MANAGER, force: 'true', fieldValidation: 'Strict' });
  if (dryRun) q.set('dryRun', dryRun);
  const ctx = new RequestContext(`${server}${path}`, HttpMethod.PATCH);
  await kc.applySecurityAuthentication(ctx);
  const res = await fetch(`${server}${path}?${q}`, {
    method: 'PATCH',
    headers: { ...ctx.getHeaders(), 'content-type': 'application/apply-patch+yaml', accept: 'application/json' },
    body: JSON.stringify(doc),
    dispatcher: ctx.getDispatcher() as Dispatcher | undefined,
  });
  const body = (await res.json()) as KubernetesObject & { message?: string };
  if (res.status >= 300)
    throw new ApplyError(res.status, `HTTP ${res.status}: ${body.message ?? JSON.stringify(body)}`);
  return body;
}

const codeOf = (e: unknown) => (e instanceof ApplyError ? e.code : statusOf(e));
const messageOf = (e: unknown) => (e instanceof ApplyError ? e.message : describeError(e));

async function exists(kc: KubeConfig, doc: KubernetesObject): Promise<boolean> {
  try {
    await KubernetesObjectApi.makeApiClient(kc).read({
      apiVersion: doc.apiVersion as string,
      kind: doc.kind as string,
      metadata: { name: doc.metadata?.name as string, namespace: doc.metadata?.namespace as string },
    });
    return true;
  } catch (e) {
    if (statusOf(e) === 404) return false;
    throw e;
  }
}

let admin: KubeConfig;
let docs: Doc[];

beforeAll(async () => {
  admin = kubeConfigFor('admin');
  docs = manifestDocs();
  // Namespaced documents need their namespace to exist (the global setup creates the usual ones).
  const namespaces = new Set(docs.map((d) => d.doc.metadata?.namespace).filter((n): n is string => !!n));
  for (const name of namespaces) {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
    if (!(await exists(admin, ns))) await ssa(admin, ns);
  }
  // The prometheus-operator CRDs, installed for real, only when some manifest uses them.
  const kinds = new Set(docs.map((d) => d.doc.kind));
  const needed = Object.keys(CRDS).filter((k) => kinds.has(k));
  if (needed.length > 0) {
    const files = prometheusOperatorCrds();
    const ext = admin.makeApiClient(ApiextensionsV1Api);
    for (const kind of needed) {
      const crd = loadAllRaw(readFileSync(files[kind] as string, 'utf8'))[0] as KubernetesObject;
      await ssa(admin, crd);
      await waitFor(
        async () => {
          const c = await ext.readCustomResourceDefinition({ name: crd.metadata?.name as string });
          return c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True');
        },
        { timeoutMs: 30_000, message: `CRD ${crd.metadata?.name} Established` },
      );
    }
  }
}, 360_000);

describe('manifests/', () => {
  it('kustomize build manifests/ installs everything but the CRD-backed monitoring, namespaces first and the Deployment after the RBAC and admission policy that confine it', () => {
    const base = kustomizeBuild(MANIFESTS);
    const kinds = base.map((d) => d.kind as string);
    expect(kinds).not.toContain('ServiceMonitor');
    expect(kinds).not.toContain('PrometheusRule');
    expect(
      kustomizeBuild(join(MANIFESTS, 'monitoring'))
        .map((d) => d.kind)
        .sort(),
    ).toEqual(['PrometheusRule', 'ServiceMonitor']);
    expect(kinds.slice(0, 2)).toEqual(['Namespace', 'Namespace']);
    const last = (kind: string) => kinds.lastIndexOf(kind);
    for (const guard of ['ClusterRoleBinding', 'RoleBinding', 'ValidatingAdmissionPolicyBinding', 'ConfigMap']) {
      expect(last(guard), `${guard} before the Deployment`).toBeLessThan(kinds.indexOf('Deployment'));
    }
  });

  it("the image is set the kustomize way: an overlay's images: entry replaces name and tag", () => {
    const overlay = mkdtempSync(join(tmpdir(), 'fwc-overlay-'));
    try {
      writeFileSync(
        join(overlay, 'kustomization.yaml'),
        JSON.stringify({
          resources: [relative(overlay, MANIFESTS)],
          images: [{ name: 'flyte-workspace-controller', newName: 'registry.example.com/team/fwc', newTag: '9.9.9' }],
        }),
      );
      const deployment = kustomizeBuild(overlay).find((d) => d.kind === 'Deployment') as V1Deployment;
      expect(deployment.spec?.template.spec?.containers.map((c) => c.image)).toEqual([
        'registry.example.com/team/fwc:9.9.9',
      ]);
    } finally {
      rmSync(overlay, { recursive: true, force: true });
    }
  });

  it(`every document passes server-side apply with dryRun=All as admin (ServiceMonitor and PrometheusRule against the prometheus-operator ${PROMETHEUS_OPERATOR.version} CRDs from its Go module), and nothing is persisted`, async () => {
    expect(docs.length).toBeGreaterThan(0);
    const existedBefore = await Promise.all(docs.map((d) => exists(admin, d.doc)));
    const failures: string[] = [];
    for (const d of docs) {
      try {
        const res = await ssa(admin, d.doc, 'All');
        expect(res.kind).toBe(d.doc.kind);
      } catch (e) {
        failures.push(`${describeDoc(d)}: ${messageOf(e)}`);
      }
    }
    expect(failures).toEqual([]);
    // No file escapes the check: each is a kustomization, a resource of one, or applied on its own.
    const covered = kustomizationResources();
    const stray = yamlFiles().filter(
      (f) => !f.endsWith('kustomization.yaml') && !covered.has(join(MANIFESTS, f)) && !STANDALONE.includes(f),
    );
    expect(stray, 'YAML files in manifests/ that no kustomization installs').toEqual([]);
    // dryRun really persisted nothing that was not there before.
    for (const [i, d] of docs.entries()) {
      if (!existedBefore[i]) expect(await exists(admin, d.doc), describeDoc(d)).toBe(false);
    }
  });

  it('the dry run has teeth: an unknown field (also in a ServiceMonitor or PrometheusRule) or a wrongly typed value is rejected', async () => {
    const deployment = docs.find((d) => d.doc.kind === 'Deployment');
    const target = structuredClone(deployment?.doc ?? docs[0]?.doc) as KubernetesObject & Record<string, unknown>;
    const unknownField = { ...target, spec: { ...(target.spec as object), replicaz: 3 } };
    // (Server-side apply reports an undeclared field as HTTP 500 "failed to create typed patch object".)
    await expect(ssa(admin, unknownField as KubernetesObject, 'All')).rejects.toThrow(
      /\.spec\.replicaz: field not declared in schema/,
    );
    // The CRD-backed documents are validated against the published schemas, not accepted as opaque.
    for (const kind of Object.keys(CRDS)) {
      const crdDoc = docs.find((d) => d.doc.kind === kind)?.doc as (KubernetesObject & { spec?: object }) | undefined;
      if (!crdDoc) continue;
      await expect(
        ssa(admin, { ...crdDoc, spec: { ...crdDoc.spec, notInTheSchema: true } } as KubernetesObject, 'All'),
        kind,
      ).rejects.toThrow(/notInTheSchema|field not declared in schema|unknown field/);
    }
    const wrongType = { ...target, metadata: { ...target.metadata, labels: { broken: 42 } } };
    await expect(ssa(admin, wrongType as unknown as KubernetesObject, 'All')).rejects.toSatisfy(
      (e) => (codeOf(e) ?? 0) >= 400,
    );
  });

  it("the Deployment's pod template passes the restricted Pod Security Standard its namespace enforces", async () => {
    const deployment = docs.find((d) => d.doc.kind === 'Deployment')?.doc as V1Deployment | undefined;
    expect(deployment, 'manifests/ has a Deployment').toBeDefined();
    const nsDoc = docs.find(
      (d) => d.doc.kind === 'Namespace' && d.doc.metadata?.name === deployment?.metadata?.namespace,
    );
    expect(nsDoc?.doc.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    // A namespace of our own with the same labels (the shared one is used by other tests).
    const name = uniqueName('psa');
    await ssa(admin, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: nsDoc?.doc.metadata?.labels } });
    const tpl = deployment?.spec?.template;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'controller', namespace: name, labels: tpl?.metadata?.labels },
      spec: tpl?.spec,
    };
    const created = await ssa(admin, pod as KubernetesObject, 'All');
    expect(created.kind).toBe('Pod');
    // And the check is real: the same pod running as root with privilege escalation is refused.
    const spec = structuredClone(tpl?.spec) as NonNullable<typeof tpl>['spec'];
    if (spec?.containers[0]) spec.containers[0].securityContext = { allowPrivilegeEscalation: true };
    if (spec) spec.securityContext = {};
    await expect(ssa(admin, { ...pod, spec } as KubernetesObject, 'All')).rejects.toThrow(
      /violates PodSecurity "restricted/,
    );
  });
});
