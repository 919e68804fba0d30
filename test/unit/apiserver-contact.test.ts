import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterConfigError, loadKubeConfig } from '../../src/controller/daemon.js';
import { ApiServerContact, describeContactFailure } from '../../src/kube/contact.js';

const SERVER = 'https://10.0.0.1:443';

/** The shape Node's fetch gives a socket error: TypeError('fetch failed') with the system error as cause. */
function fetchFailed(code: string, message = `connect ${code} 10.0.0.1:443`): Error {
  const cause = Object.assign(new Error(message), { code });
  return new TypeError('fetch failed', { cause });
}

describe('describeContactFailure', () => {
  it.each([
    ['ECONNREFUSED', 'connection-refused', 'connection refused (ECONNREFUSED)'],
    ['ENOTFOUND', 'dns', 'host name not found (DNS) (ENOTFOUND)'],
    ['EAI_AGAIN', 'dns', 'DNS lookup failed temporarily (EAI_AGAIN)'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'tls', 'TLS: server certificate not signed by a trusted CA'],
    ['CERT_HAS_EXPIRED', 'tls', 'TLS: the server certificate has expired'],
    ['UND_ERR_CONNECT_TIMEOUT', 'timeout', 'connection timed out'],
  ])('names the server and the cause of a wrapped %s', (code, cause, words) => {
    const d = describeContactFailure(SERVER, fetchFailed(code));
    expect(d?.cause).toBe(cause);
    expect(d?.message).toContain(`cannot reach the Kubernetes API server ${SERVER}: `);
    expect(d?.message).toContain(words);
  });

  it('reads an undici error code given directly (no fetch wrapper)', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    expect(describeContactFailure(SERVER, err)?.cause).toBe('connection-refused');
  });

  it('reads the first attempt of an AggregateError (dual-stack connects)', () => {
    const first = Object.assign(new Error('connect ECONNREFUSED ::1:443'), { code: 'ECONNREFUSED' });
    const agg = new AggregateError([first], 'all attempts failed');
    expect(describeContactFailure(SERVER, agg)?.cause).toBe('connection-refused');
  });

  it('a timeout of our own signal is "no answer in time"', () => {
    const err = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    expect(describeContactFailure(SERVER, err)).toEqual({
      cause: 'timeout',
      message: `cannot reach the Kubernetes API server ${SERVER}: no answer in time`,
    });
  });

  it('401 and 403 are failures (reached, but refused); 404, 409 and 422 mean the server answered', () => {
    expect(describeContactFailure(SERVER, { code: 401 })?.cause).toBe('unauthorized');
    expect(describeContactFailure(SERVER, { code: 403 })?.cause).toBe('forbidden');
    expect(describeContactFailure(SERVER, { code: 503 })?.cause).toBe('http-503');
    for (const code of [404, 409, 422]) expect(describeContactFailure(SERVER, { code })).toBeUndefined();
  });

  it('an unknown error keeps its innermost message', () => {
    const d = describeContactFailure(SERVER, new TypeError('fetch failed', { cause: new Error('strange') }));
    expect(d).toEqual({ cause: 'unknown', message: `cannot reach the Kubernetes API server ${SERVER}: strange` });
  });
});

describe('ApiServerContact.readiness', () => {
  function clock() {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  }

  it('is not ready before the first contact, with the cause once a call failed', () => {
    const c = clock();
    const contact = new ApiServerContact(SERVER, c.now);
    expect(contact.readiness(3000)).toBe(`not contacted the Kubernetes API server ${SERVER} yet`);
    contact.failed(fetchFailed('ECONNREFUSED'));
    expect(contact.readiness(3000)).toMatch(/^never reached: cannot reach .*connection refused/);
  });

  it('tolerates failures up to the tolerance after a success, then reports the loss and its duration', () => {
    const c = clock();
    const contact = new ApiServerContact(SERVER, c.now);
    contact.succeeded();
    c.advance(1000);
    contact.failed(fetchFailed('ECONNREFUSED'));
    c.advance(2000);
    contact.failed(fetchFailed('ECONNREFUSED'));
    expect(contact.readiness(3000)).toBe(true);
    c.advance(2000);
    expect(contact.readiness(3000)).toMatch(/^lost for 4s: cannot reach/);
    contact.succeeded();
    expect(contact.readiness(3000)).toBe(true);
  });

  it('an API answer such as 404 counts as contact', () => {
    const contact = new ApiServerContact(SERVER, () => 0);
    expect(contact.failed({ code: 404 })).toBeUndefined();
    expect(contact.readiness(3000)).toBe(true);
  });

  it('tells listeners once when calls start failing and once when they recover', () => {
    const contact = new ApiServerContact(SERVER, () => 0);
    const events: string[] = [];
    contact.onChange((e) => events.push(e));
    contact.succeeded();
    contact.failed(fetchFailed('ECONNREFUSED'));
    contact.failed(fetchFailed('ECONNREFUSED'));
    contact.succeeded();
    contact.succeeded();
    expect(events).toEqual(['failing', 'restored']);
  });
});

describe('loadKubeConfig', () => {
  function withHome(fn: (home: string) => void) {
    const home = mkdtempSync(join(tmpdir(), 'fwc-kc-'));
    try {
      fn(home);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }
  const kubeconfig = (server: string) =>
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    });

  it('without any configuration, fails naming both the in-cluster and the kubeconfig way', () =>
    withHome((home) => {
      expect(() => loadKubeConfig(undefined, { HOME: home })).toThrow(ClusterConfigError);
      expect(() => loadKubeConfig(undefined, { HOME: home })).toThrow(
        /no Kubernetes cluster configuration found: either run in a pod \(KUBERNETES_SERVICE_HOST.*--kubeconfig FILE, the KUBECONFIG environment variable, or ~\/\.kube\/config/,
      );
    }));

  it('takes --kubeconfig, then KUBECONFIG, then ~/.kube/config', () =>
    withHome((home) => {
      const a = join(home, 'a');
      const b = join(home, 'b');
      writeFileSync(a, kubeconfig('https://a:6443'));
      writeFileSync(b, kubeconfig('https://b:6443'));
      mkdirSync(join(home, '.kube'));
      writeFileSync(join(home, '.kube', 'config'), kubeconfig('https://home:6443'));
      expect(loadKubeConfig(a, { HOME: home, KUBECONFIG: b }).getCurrentCluster()?.server).toBe('https://a:6443');
      expect(loadKubeConfig(undefined, { HOME: home, KUBECONFIG: b }).getCurrentCluster()?.server).toBe(
        'https://b:6443',
      );
      expect(loadKubeConfig(undefined, { HOME: home }).getCurrentCluster()?.server).toBe('https://home:6443');
    }));

  it('KUBECONFIG may list several files: the first names the current context', () =>
    withHome((home) => {
      const a = join(home, 'a');
      const b = join(home, 'b');
      writeFileSync(a, kubeconfig('https://a:6443'));
      writeFileSync(
        b,
        kubeconfig('https://b:6443').replaceAll('"c"', '"c2"').replaceAll('"x"', '"x2"').replaceAll('"u"', '"u2"'),
      );
      const kc = loadKubeConfig(undefined, { HOME: home, KUBECONFIG: `${a}:${b}` });
      expect(kc.getCurrentCluster()?.server).toBe('https://a:6443');
      expect(kc.getClusters().map((c) => c.server)).toEqual(['https://a:6443', 'https://b:6443']);
    }));

  it('a kubeconfig file that is missing is an error naming it', () =>
    withHome((home) => {
      expect(() => loadKubeConfig(join(home, 'nope'), { HOME: home })).toThrow(/--kubeconfig .*nope/);
    }));
});
