import { describe, expect, it } from 'vitest';
import { setOverrides } from '../../src/cli.js';
import { ConfigError, envOverrides, loadConfig } from '../../src/config/config.js';

describe('configuration', () => {
  it('layers file < env < flags, parsing JSON values', () => {
    const env = { FWC_RECONCILE__CONCURRENCY: '8', FWC_SOURCE_NAMESPACES: '["a","b"]', FWC_LOG_LEVEL: 'debug' };
    expect(envOverrides(env)).toEqual({
      reconcile: { concurrency: 8 },
      sourceNamespaces: ['a', 'b'],
      logLevel: 'debug',
    });
    const cfg = loadConfig({ env, overrides: setOverrides(['reconcile.concurrency=16', 'flyte.enabled=false']) });
    expect(cfg.reconcile.concurrency).toBe(16);
    expect(cfg.sourceNamespaces).toEqual(['a', 'b']);
    expect(cfg.flyte.enabled).toBe(false);
  });

  it('fails at start with a message naming the setting', () => {
    const bad = (overrides: unknown) => {
      try {
        loadConfig({ overrides });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).setting;
      }
      throw new Error('expected a ConfigError');
    };
    expect(bad({ reconcile: { concurrency: 0 } })).toBe('reconcile.concurrency');
    expect(bad({ nope: 1 })).toBe('nope');
    expect(bad({ names: { namespace: 'static-name' } })).toBe('names.namespace');
    expect(bad({ defaultTier: 'gold' })).toBe('defaultTier');
    expect(bad({ tiers: { default: { pods: 'lots' } } })).toBe('tiers.default.pods');
    expect(bad({ sourceNamespaces: ['*', 'x'] })).toBe('sourceNamespaces');
    expect(bad({ leaderElection: { leaseDurationSeconds: 5, renewDeadlineSeconds: 10 } })).toBe(
      'leaderElection.leaseDurationSeconds',
    );
    expect(bad({ aws: { oidcProviderArn: 'not-an-arn' } })).toBe('aws.oidcProviderArn');
    expect(bad({ flyte: { userEndpoint: 'https://flyte.example.com' } })).toBe('flyte.userEndpoint');
    expect(bad({ flyte: { userEndpoint: 'flyte.example.com:443\nx: y' } })).toBe('flyte.userEndpoint');
    expect(bad({ names: { contextConfigMap: 'Not_A_Name' } })).toBe('names.contextConfigMap');
    expect(
      loadConfig({ overrides: { flyte: { userEndpoint: 'dns:///flyte.example.com:443' } } }).flyte.userEndpoint,
    ).toBe('dns:///flyte.example.com:443');
  });

  it('ignores prototype-polluting keys in overrides', () => {
    const cfg = loadConfig({ overrides: JSON.parse('{"__proto__":{"polluted":1},"logLevel":"warn"}') });
    expect(cfg.logLevel).toBe('warn');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
