// What `status` and `rerun` show about one workspace ConfigMap, read from its status annotation, and the
// table they print it in (kubectl/flux style: upper-case headers, columns three spaces apart, the last
// column cut to the terminal). Pure functions only.
import type { KubeObject } from '../adapters/kubernetes.js';
import { RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../config/config.js';
import { parseStatus, type WorkspaceStatus } from '../reconcile/status.js';
import type { StepName } from '../reconcile/types.js';

export interface WorkspaceRow {
  namespace: string;
  name: string;
  workspaceId?: string;
  /** The status phase; `Unknown` when the controller has not written a (readable) status yet. */
  phase: string;
  ready: 'True' | 'False' | 'Unknown';
  /** When the Ready condition last changed (RFC 3339). */
  readySince?: string;
  /** The step that keeps the workspace from Ready: kubernetes, iam, flyte, or spec / claim before any step ran. */
  failingStep?: string;
  reason: string;
  message: string;
  /** Rerun token in the ConfigMap's annotation, and the one the controller handled last. */
  requestedAt?: string;
  lastHandledReconcileAt?: string;
  namespaces?: string[];
  roleArn?: string;
  flyteProject?: string;
  status?: WorkspaceStatus;
}

const STEP_ORDER: StepName[] = ['kubernetes', 'iam', 'flyte'];
const ERROR_PHASES = new Set(['Failed', 'Invalid', 'Conflict']);

export function workspaceRow(cm: KubeObject): WorkspaceRow {
  const annotations = cm.metadata.annotations ?? {};
  const base = {
    namespace: cm.metadata.namespace ?? '',
    name: cm.metadata.name,
    ...(annotations[RECONCILE_REQUEST_ANNOTATION] ? { requestedAt: annotations[RECONCILE_REQUEST_ANNOTATION] } : {}),
  };
  const raw = annotations[STATUS_ANNOTATION];
  const status = parseStatus(raw);
  if (!status) {
    return {
      ...base,
      phase: 'Unknown',
      ready: 'Unknown',
      reason: raw ? 'StatusUnreadable' : 'NotReconciled',
      message: raw
        ? `annotation ${STATUS_ANNOTATION} is not a workspace status`
        : 'no status yet: the controller has not reconciled this ConfigMap',
    };
  }
  const ready = status.conditions.find((c) => c.type === 'Ready');
  const failing = failingStep(status);
  const row: WorkspaceRow = {
    ...base,
    phase: status.phase,
    ready: ready?.status ?? 'Unknown',
    reason: failing?.reason ?? ready?.reason ?? '',
    // A status on its way to Ready still carries the previous lastError: show it only while it applies.
    message: (ERROR_PHASES.has(status.phase) ? status.lastError : undefined) ?? ready?.message ?? '',
    status,
  };
  if (status.workspaceId) row.workspaceId = status.workspaceId;
  if (ready?.lastTransitionTime) row.readySince = ready.lastTransitionTime;
  if (failing) row.failingStep = failing.step;
  if (status.lastHandledReconcileAt) row.lastHandledReconcileAt = status.lastHandledReconcileAt;
  if (status.namespaces) row.namespaces = status.namespaces;
  if (status.roleArn) row.roleArn = status.roleArn;
  if (status.flyteProject) row.flyteProject = status.flyteProject;
  return row;
}

function failingStep(s: WorkspaceStatus): { step: string; reason: string } | undefined {
  if (s.phase === 'Ready' || s.phase === 'Disabled') return undefined;
  const ready = s.conditions.find((c) => c.type === 'Ready');
  if (s.phase === 'Invalid') return { step: 'spec', reason: ready?.reason ?? 'InvalidSpec' };
  for (const step of STEP_ORDER) {
    const st = s.steps[step];
    if (st && (st.state === 'Failed' || st.state === 'Conflict')) return { step, reason: st.reason };
  }
  if (s.phase === 'Conflict') return { step: 'claim', reason: ready?.reason ?? 'Conflict' };
  return undefined;
}

export function isReady(row: WorkspaceRow): boolean {
  return row.ready === 'True';
}

/** The row as machine output: everything, the full status included, with no empty fields. */
export function rowJson(row: WorkspaceRow): Record<string, unknown> {
  const { namespace, name, ...rest } = row;
  return { source: { namespace, name }, ...rest };
}

// ---------------------------------------------------------------------------------------------------------
// Table

export interface TableOptions {
  wide?: boolean;
  /** Terminal width: the last column is cut to fit; 0 = never cut (output is not a terminal). */
  width: number;
  now: number;
  /** Rows will follow that this table has not seen (--watch): leave room for the longest phase and age. */
  roomForChanges?: boolean;
}

interface Column {
  header: string;
  cell(row: WorkspaceRow, now: number): string;
  /** Width to keep free when more rows may come (--watch). */
  room?: number;
}

const COLUMNS: Column[] = [
  { header: 'SOURCE', cell: (r) => `${r.namespace}/${r.name}` },
  { header: 'WORKSPACE', cell: (r) => r.workspaceId ?? '-' },
  { header: 'PHASE', cell: (r) => r.phase, room: 'Provisioning'.length },
  { header: 'READY', cell: (r) => r.ready, room: 'Unknown'.length },
  { header: 'AGE', cell: (r, now) => (r.readySince ? humanAge(now - Date.parse(r.readySince)) : '-'), room: 5 },
  { header: 'STEP', cell: (r) => r.failingStep ?? '-' },
  { header: 'REASON', cell: (r) => r.reason || '-' },
];

const WIDE_COLUMNS: Column[] = [
  { header: 'NAMESPACES', cell: (r) => r.namespaces?.join(',') || '-' },
  { header: 'ROLE', cell: (r) => r.roleArn ?? '-' },
  { header: 'PROJECT', cell: (r) => r.flyteProject ?? '-' },
  { header: 'RERUN', cell: (r) => rerunState(r) },
];

const MESSAGE: Column = { header: 'MESSAGE', cell: (r) => r.message.replace(/\s+/g, ' ').trim() };

function rerunState(r: WorkspaceRow): string {
  if (!r.requestedAt) return '-';
  return r.requestedAt === r.lastHandledReconcileAt ? 'handled' : 'pending';
}

const GAP = '   ';

/**
 * A table whose column widths can be kept for rows printed later (`--watch`): `header()` once, then
 * `line(row)` for every row; widths grow from what `fit` saw.
 */
export class WorkspaceTable {
  private readonly columns: Column[];
  private readonly widths: number[];

  constructor(
    private readonly opts: TableOptions,
    fit: WorkspaceRow[] = [],
  ) {
    this.columns = [...COLUMNS, ...(opts.wide ? WIDE_COLUMNS : [])];
    this.widths = this.columns.map((c) =>
      Math.max(c.header.length, opts.roomForChanges ? (c.room ?? 0) : 0, ...fit.map((r) => c.cell(r, opts.now).length)),
    );
  }

  header(): string {
    return this.render(
      this.columns.map((c) => c.header),
      MESSAGE.header,
    );
  }

  line(row: WorkspaceRow, now = this.opts.now): string {
    return this.render(
      this.columns.map((c) => c.cell(row, now)),
      MESSAGE.cell(row, now),
    );
  }

  private render(cells: string[], message: string): string {
    const lead = cells.map((c, i) => c.padEnd(this.widths[i] ?? 0)).join(GAP) + GAP;
    const room = this.opts.width - lead.length;
    // Like kubectl, a terminal too narrow for the other columns still gets a few characters of message.
    const cut = this.opts.width > 0 && !this.opts.wide ? clipTo(message, Math.max(room, 12)) : message;
    return (lead + cut).trimEnd();
  }
}

export function formatTable(rows: WorkspaceRow[], opts: TableOptions): string[] {
  const table = new WorkspaceTable(opts, rows);
  return [table.header(), ...rows.map((r) => table.line(r))];
}

function clipTo(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** kubectl's age format (apimachinery's HumanDuration): 45s, 3m12s, 42m, 5h7m, 20h, 3d4h, 40d, 2y10d. */
export function humanAge(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (days < 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

// ---------------------------------------------------------------------------------------------------------
// Durations (`--timeout 5m`), Go's syntax as flux and kubectl take it

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "5m", "90s", "1m30s", "500ms", "1h" → milliseconds; undefined when not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * (UNIT_MS[p[2] as string] as number), 0);
  return ms > 0 ? ms : undefined;
}

/** Go's time.Duration.String() for whole seconds and up: 5m0s, 1h0m0s, 30s; milliseconds below a second. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}
