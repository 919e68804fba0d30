// The workspace context ConfigMap: what a user's tools need to reach the workspace's Flyte project from a
// pod in a workspace namespace. Pure. The keys are those flytectl and flytekit read themselves:
//   * config.yaml, the flytectl config file, which flytekit reads too (~/.flyte/config.yaml or the file
//     named by FLYTECTL_CONFIG): admin.endpoint / admin.insecure (flytectl's admin section, flytekit's
//     Platform.URL / Platform.INSECURE), console.endpoint, and task.project / task.domain (flytectl ≥ 0.9.4
//     fills --project/--domain from them; flytekit ≥ 1.16.4 uses them as pyflyte's defaults).
//   * environment-style keys for `envFrom`: FLYTE_PLATFORM_URL / FLYTE_PLATFORM_INSECURE /
//     FLYTE_PLATFORM_CONSOLE_ENDPOINT (flytekit's FLYTE_<SECTION>_<OPTION> variables) and
//     FLYTE_DEFAULT_PROJECT / FLYTE_DEFAULT_DOMAIN (pyflyte's --project / --domain defaults).
import type { ControllerConfig } from '../config/config.js';
import type { WorkspaceSpec } from '../spec/workspace.js';

export const CONFIG_FILE_KEY = 'config.yaml';

export interface WorkspaceContext {
  project: string;
  domain: string;
  workspaceId: string;
  dataBucket: string;
  /** host:port users dial; absent when the platform did not configure one. */
  endpoint?: string;
  insecure: boolean;
  consoleUrl?: string;
}

export function workspaceContext(
  cfg: Pick<ControllerConfig, 'flyte'>,
  spec: WorkspaceSpec,
  domain: string,
): WorkspaceContext {
  const ctx: WorkspaceContext = {
    project: spec.workspaceId,
    domain,
    workspaceId: spec.workspaceId,
    dataBucket: spec.dataBucket,
    insecure: cfg.flyte.userInsecure,
  };
  if (cfg.flyte.userEndpoint) {
    ctx.endpoint = cfg.flyte.userEndpoint.replace(/^dns:\/\/\//, '');
    ctx.consoleUrl = cfg.flyte.consoleBaseUrl.replace(/\/+$/, '');
  }
  return ctx;
}

/** The ConfigMap's data: the config file plus the same facts as environment variables. */
export function workspaceContextData(ctx: WorkspaceContext): Record<string, string> {
  const data: Record<string, string> = {
    [CONFIG_FILE_KEY]: configYaml(ctx),
    FLYTE_DEFAULT_PROJECT: ctx.project,
    FLYTE_DEFAULT_DOMAIN: ctx.domain,
    WORKSPACE_ID: ctx.workspaceId,
    WORKSPACE_DATA_BUCKET: ctx.dataBucket,
  };
  // No endpoint, no connection keys: an empty FLYTE_PLATFORM_URL would override a user's own config file.
  if (ctx.endpoint) {
    data.FLYTE_PLATFORM_URL = ctx.endpoint;
    data.FLYTE_PLATFORM_INSECURE = String(ctx.insecure);
    if (ctx.consoleUrl) data.FLYTE_PLATFORM_CONSOLE_ENDPOINT = ctx.consoleUrl;
  }
  return data;
}

/**
 * flytectl's config file. Strings are written JSON-quoted (a JSON string is a valid YAML double-quoted
 * scalar), so no value can change the document's structure.
 */
export function configYaml(ctx: WorkspaceContext): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    `# Flyte client configuration for workspace ${ctx.workspaceId}, written by flyte-workspace-controller;`,
    '# edits are overwritten. Read by flytectl and pyflyte (~/.flyte/config.yaml or $FLYTECTL_CONFIG).',
  ];
  if (ctx.endpoint) {
    lines.push('admin:', `  endpoint: ${q(`dns:///${ctx.endpoint}`)}`, `  insecure: ${ctx.insecure}`);
    if (ctx.consoleUrl) lines.push('console:', `  endpoint: ${q(ctx.consoleUrl)}`);
  }
  lines.push('task:', `  project: ${q(ctx.project)}`, `  domain: ${q(ctx.domain)}`);
  return `${lines.join('\n')}\n`;
}
