// Name templates: the one place that turns a workspace id into object names, and knows their limits.
import type { ControllerConfig } from '../config/config.js';

export interface TemplateVars {
  workspace_id: string;
  project?: string;
  domain?: string;
}

export function renderTemplate(template: string, vars: TemplateVars): string {
  return template.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, key: string) => {
    const value = (vars as unknown as Record<string, string | undefined>)[key];
    if (value === undefined) throw new Error(`template ${template}: no value for {{ ${key} }}`);
    return value;
  });
}

/** The settings names are made from: the templates and the domains. */
export type NamingConfig = Pick<ControllerConfig, 'names' | 'domains'>;

export interface WorkspaceNames {
  /** Namespaces keyed by domain; in single-namespace mode every domain maps to the same namespace. */
  namespaceByDomain: Map<string, string>;
  namespaces: string[];
  serviceAccount: string;
  resourceQuota: string;
  networkPolicy: string;
  iamRole: string;
  flyteProject: string;
}

export function workspaceNames(cfg: NamingConfig, workspaceId: string, domains = cfg.domains): WorkspaceNames {
  const vars: TemplateVars = { workspace_id: workspaceId, project: workspaceId };
  const namespaceByDomain = new Map<string, string>();
  for (const domain of domains) {
    namespaceByDomain.set(
      domain,
      cfg.names.namespacePerDomain
        ? renderTemplate(cfg.names.domainNamespace, { ...vars, domain })
        : renderTemplate(cfg.names.namespace, vars),
    );
  }
  return {
    namespaceByDomain,
    namespaces: [...new Set(namespaceByDomain.values())],
    serviceAccount: renderTemplate(cfg.names.serviceAccount, vars),
    resourceQuota: renderTemplate(cfg.names.resourceQuota, vars),
    networkPolicy: renderTemplate(cfg.names.networkPolicy, vars),
    iamRole: renderTemplate(cfg.names.iamRole, vars),
    flyteProject: workspaceId,
  };
}

/** Hard limits of the systems that will receive each derived name. */
export const NAME_LIMITS = {
  namespace: 63, // DNS-1123 label
  objectName: 253, // DNS-1123 subdomain (quota, netpol, SA)
  iamRole: 64,
  flyteProject: 63, // FlyteAdmin: DNS-1123 label
} as const;

/**
 * The longest workspace id for which every derived name fits, computed from the configured templates
 * (so a longer template shortens the allowed id instead of failing later in some downstream API).
 */
export function maxWorkspaceIdLength(cfg: NamingConfig): { max: number; boundBy: string } {
  const probe = 'x';
  const bounds: [string, number][] = [['flyte project id', NAME_LIMITS.flyteProject]];
  const fixed = (tpl: string, domain?: string) =>
    renderTemplate(tpl, { workspace_id: probe, project: probe, domain: domain ?? '' }).length -
    countPlaceholders(tpl, ['workspace_id', 'project']) * probe.length;
  const perId = (tpl: string) => countPlaceholders(tpl, ['workspace_id', 'project']);
  const add = (what: string, tpl: string, limit: number, domain?: string) => {
    const n = perId(tpl);
    if (n > 0) bounds.push([what, Math.floor((limit - fixed(tpl, domain)) / n)]);
  };
  if (cfg.names.namespacePerDomain) {
    for (const d of cfg.domains) add(`namespace for domain ${d}`, cfg.names.domainNamespace, NAME_LIMITS.namespace, d);
  } else {
    add('namespace', cfg.names.namespace, NAME_LIMITS.namespace);
  }
  add('IAM role name', cfg.names.iamRole, NAME_LIMITS.iamRole);
  add('service account', cfg.names.serviceAccount, NAME_LIMITS.objectName);
  add('resource quota', cfg.names.resourceQuota, NAME_LIMITS.objectName);
  add('network policy', cfg.names.networkPolicy, NAME_LIMITS.objectName);
  let best = bounds[0] as [string, number];
  for (const b of bounds) if (b[1] < best[1]) best = b;
  return { max: best[1], boundBy: best[0] };
}

function countPlaceholders(tpl: string, keys: string[]): number {
  let n = 0;
  for (const m of tpl.matchAll(/\{\{\s*([a-z_]+)\s*\}\}/g)) if (keys.includes(m[1] as string)) n++;
  return n;
}
