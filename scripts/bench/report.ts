// Markdown rendering of a benchmark report (the JSON next to it has every number).

import type { CpuUsage } from './proc.js';
import { SYSTEMS } from './prom.js';
import type { ApiCost, PassResult } from './results.js';

interface Report {
  meta: {
    date: string;
    commit: string;
    srcDirty: boolean;
    node: string;
    cpus: number;
    cpuModel: string;
    memGiB: number;
    options: object;
  };
  passes: PassResult[];
}

const row = (cells: (string | number | undefined)[]) =>
  `| ${cells.map((c) => (c === undefined ? '—' : c)).join(' | ')} |`;

function table(head: string[], rows: (string | number | undefined)[][]): string {
  return [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n');
}

function cpuLine(c: CpuUsage): string {
  const parts = Object.entries(c.seconds)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`);
  return `${parts.join(', ')}, other processes ${c.othersSeconds} CPU-s over ${c.wallSeconds} s wall; machine busy ${Math.round(c.machineBusy * 100)}%, load ${c.loadavg1}`;
}

function costRows(label: string, c: ApiCost | undefined): (string | number | undefined)[] {
  if (!c) return [label];
  return [
    label,
    c.units,
    ...SYSTEMS.flatMap((s) => [c.perUnit[s].reads, c.perUnit[s].writes]),
    Object.values(c.reconciles).reduce((a, b) => a + b, 0) / Math.max(1, c.units),
  ].map((v) => (typeof v === 'number' ? Math.round(v * 100) / 100 : v));
}

function mem(m: PassResult['memoryAtEnd']): number[] {
  return [m.rssMiB, m.peakRssMiB, m.heapUsedMiB, m.heapTotalMiB];
}

function ops(byOperation: Record<string, number>): string {
  return Object.entries(byOperation)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

function perWs(v: number | undefined, n: number): number {
  return Math.round(((v ?? 0) / n) * 100) / 100;
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'met' : '**not met**';
}

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  const m = r.meta;
  out.push(`# Controller benchmark, ${m.date.slice(0, 16).replace('T', ' ')} UTC`);
  out.push('');
  out.push(
    `Commit \`${m.commit}\`${m.srcDirty ? ' (with uncommitted changes in src/)' : ''}, Node ${m.node}, ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB. ` +
      `Options: \`${JSON.stringify(m.options)}\` (controllerNodeArgs: the controller's node flags, by default those ` +
      'of the container command in manifests/deployment.yaml).',
  );
  out.push('');
  out.push(
    'Everything runs on this machine: etcd, kube-apiserver, kube-controller-manager, the controller process, ' +
      'the benchmark (baseline client, admin watch, churn writer, FlyteAdmin double) and moto. "other processes" is CPU ' +
      'used on the machine by anything else during the phase (other test runs): a high value means a noisy number.',
  );

  const k8s = r.passes.find((p) => p.name === 'kubernetes');
  out.push('', '## Targets', '');
  const targets: (string | number | undefined)[][] = [];
  if (k8s) {
    const ratio = k8s.coldStart.ratioToBaseline;
    targets.push([
      `cold start (Kubernetes part) ≥ 80% of baseline, at N=${k8s.n}`,
      ratio === undefined
        ? undefined
        : `${Math.round(ratio * 100)}% from spawn, median of ${k8s.coldStartTrials ? new Set(k8s.coldStartTrials.map((t) => t.round)).size : 1} round(s)` +
          (k8s.coldStart.ratioRange
            ? ` (rounds: ${k8s.coldStart.ratioRange.map((x) => `${Math.round(x * 100)}%`).join('–')})`
            : ''),
      verdict(ratio === undefined ? undefined : ratio >= 0.8),
    ]);
  }
  for (const p of r.passes) {
    const writes = SYSTEMS.reduce((a, s) => a + p.resync.writes[s], 0);
    const scaled = (p.resync.controllerCpuSeconds * 5000) / p.n;
    targets.push([
      `no-op resync (${p.name}, N=${p.n}): zero writes, < 10 s CPU for 5,000`,
      `${writes} writes, ${p.resync.controllerCpuSeconds} CPU-s (${Math.round(scaled * 10) / 10} s scaled to 5,000)`,
      verdict(writes === 0 && scaled < 10),
    ]);
    if (p.churn) {
      targets.push([
        `churn p99 < 1 s at ${p.churn.rate}/s (${p.name}, N=${p.n})`,
        `p99 ${p.churn.p99Ms} ms (${p.churn.timedOut} timed out)`,
        verdict(p.churn.p99Ms < 1000 && p.churn.timedOut === 0),
      ]);
    }
    targets.push([
      `RSS < 200 MiB (${p.name}, N=${p.n})`,
      `${p.memoryConverged.rssMiB} MiB converged and idle; ${p.memoryAfterColdStart.rssMiB} MiB 3 s after cold start, peak ${p.memoryAtEnd.peakRssMiB} MiB`,
      verdict(p.memoryConverged.rssMiB < 200),
    ]);
  }
  out.push(table(['target', 'measured', ''], targets));

  for (const p of r.passes) {
    out.push(
      '',
      `## Pass "${p.name}": N=${p.n}, concurrency ${p.concurrency}${p.external ? ' (Kubernetes + IAM on moto + FlyteAdmin double)' : ' (Kubernetes only)'}`,
      '',
    );
    const c = p.coldStart;
    out.push('### Cold start', '');
    const rows: (string | number | undefined)[][] = [];
    if (p.baseline) {
      rows.push([
        'baseline (plain loop, same client, identity and concurrency)',
        p.baseline.seconds,
        p.baseline.workspacesPerSecond,
        '1.00',
      ]);
    }
    if (p.baseline && p.protocolBaseline) {
      rows.push([
        "baseline + the controller's protocol requests (namespace read, finalizer write, Event)",
        p.protocolBaseline.seconds,
        p.protocolBaseline.workspacesPerSecond,
        (p.protocolBaseline.workspacesPerSecond / p.baseline.workspacesPerSecond).toFixed(2),
      ]);
    }
    rows.push([
      'controller, from process spawn',
      c.secondsFromSpawn,
      c.workspacesPerSecond,
      p.baseline ? (c.workspacesPerSecond / p.baseline.workspacesPerSecond).toFixed(2) : undefined,
    ]);
    rows.push([
      `controller, from cache sync (${c.cacheSyncSeconds} s after spawn)`,
      c.secondsFromSynced,
      c.workspacesPerSecondFromSynced,
      p.baseline ? (c.workspacesPerSecondFromSynced / p.baseline.workspacesPerSecond).toFixed(2) : undefined,
    ]);
    out.push(table(['', 'seconds', 'workspaces/s', 'ratio'], rows));
    out.push('');
    if (p.coldStartTrials) {
      out.push(
        'Every trial ran on a fresh control plane holding the same N workspace ConfigMaps; rounds alternate their ' +
          'order. The table above is the last round; the ratio in Targets is median controller ÷ median baseline ' +
          'throughput over all trials:',
        '',
        table(
          ['round', 'trial', 'seconds', 'workspaces/s', 'CPU ms per workspace'],
          p.coldStartTrials.map((t) => [t.round + 1, t.kind, t.seconds, t.workspacesPerSecond, t.cpuMsPerWorkspace]),
        ),
        '',
      );
    }
    out.push(
      `Half Ready after ${c.halfReadySeconds} s, 90% after ${c.ninetyReadySeconds} s, queue idle after ${c.secondsToIdle} s (from spawn).`,
    );
    if (p.baseline) out.push(`Baseline CPU: ${cpuLine(p.baseline.cpu)}.`, '');
    if (p.protocolBaseline) {
      out.push(
        `Baseline + protocol requests CPU: ${cpuLine(p.protocolBaseline.cpu)}; ${p.protocolBaseline.apiserver.totalRequests / p.n} kube-apiserver requests and ${(p.protocolBaseline.apiserver.watchEvents / p.n).toFixed(2)} watch events per workspace.`,
        '',
      );
    }
    out.push(
      `Controller process until its queue was idle: ${c.controllerCpuSeconds} CPU-s (${Math.round((c.controllerCpuSeconds / p.n) * 10000) / 10} ms per workspace), of which GC ${c.controllerGcSeconds} s.`,
    );
    out.push(`CPU until the last workspace was Ready: ${cpuLine(c.cpu)}.`);
    if (p.baseline) {
      const per = (cpu: CpuUsage) =>
        Math.round((Object.values(cpu.seconds).reduce((a, b) => a + b, 0) / p.n) * 10000) / 10;
      out.push(
        '',
        `CPU per workspace of the processes under test (control plane + client/controller + benchmark): baseline ${per(p.baseline.cpu)} ms, ` +
          `controller ${per(c.cpu)} ms: a CPU-cost ratio, medians over all trials, of ${c.cpuCostRatioToBaseline?.toFixed(2)}, which is the throughput ratio on a ` +
          'machine where both runs are CPU-bound and nothing else runs.',
      );
      const a = p.baseline.apiserver;
      const b = c.apiserver;
      const keys = [...new Set([...Object.keys(a.requests), ...Object.keys(b.requests)])].sort(
        (x, y) => (b.requests[y] ?? 0) - (b.requests[x] ?? 0),
      );
      out.push('', 'kube-apiserver work per workspace (all clients, including kube-controller-manager):', '');
      out.push(
        table(
          ['', 'baseline', 'controller'],
          [
            ...keys.map((k) => [k, perWs(a.requests[k], p.n), perWs(b.requests[k], p.n)]),
            ['all requests', perWs(a.totalRequests, p.n), perWs(b.totalRequests, p.n)],
            ['watch events sent', perWs(a.watchEvents, p.n), perWs(b.watchEvents, p.n)],
            ['watch KiB sent', perWs(a.watchEventMiB * 1024, p.n), perWs(b.watchEventMiB * 1024, p.n)],
          ],
        ),
      );
    }
    const ext = c.cost.totals;
    if (p.external) {
      out.push(
        '',
        `External calls during cold start: IAM ${ext.iam.reads} reads / ${ext.iam.writes} writes, ` +
          `Flyte ${ext.flyte.reads} reads / ${ext.flyte.writes} writes, ` +
          `Kubernetes ${ext.kubernetes.reads} reads / ${ext.kubernetes.writes} writes ` +
          `(answered with an error: IAM ${ext.iam.errors}, Flyte ${ext.flyte.errors}, Kubernetes ${ext.kubernetes.errors}; ` +
          'the NotFound of a first read counts as one). IAM operations: ' +
          `${ops(ext.iam.byOperation)}; Flyte operations: ${ops(ext.flyte.byOperation)}.`,
      );
    }

    if (p.restart) {
      out.push('', '### Restart', '');
      out.push(
        `A new controller process with N converged workspaces: queue idle ${p.restart.secondsFromSpawn} s after spawn ` +
          `(caches synced after ${p.restart.cacheSyncSeconds} s), controller CPU ${p.restart.controllerCpuSeconds} s; ` +
          'external requests per workspace in the API cost table (IAM and Flyte state recorded as Ready in status is ' +
          're-checked within one drift-check interval, not at once).',
      );
    }

    out.push('', '### No-op resync (SIGHUP)', '');
    out.push(
      `Queue idle ${p.resync.wallSeconds} s after SIGHUP; controller CPU ${p.resync.controllerCpuSeconds} s (GC ${p.resync.controllerGcSeconds} s); writes: ` +
        SYSTEMS.map((s) => `${s} ${p.resync.writes[s]}`).join(', ') +
        `. ${cpuLine(p.resync.cpu)}.`,
    );

    if (p.churn) {
      const ch = p.churn;
      out.push('', '### Churn', '');
      out.push(
        `${ch.issued} changes at ${ch.rate}/s for ${ch.seconds} s (${Object.entries(ch.byKind)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}); ConfigMap write → status Ready with that spec's hash:`,
      );
      out.push('');
      out.push(
        table(
          ['p50', 'p95', 'p99', 'max', 'mean', 'timed out', 'write request p50'],
          [
            [
              `${ch.p50Ms} ms`,
              `${ch.p95Ms} ms`,
              `${ch.p99Ms} ms`,
              `${ch.maxMs} ms`,
              `${ch.meanMs} ms`,
              ch.timedOut,
              `${ch.writeMsP50} ms`,
            ],
          ],
        ),
      );
      out.push('', `CPU: ${cpuLine(ch.cpu)}.`);
    }

    out.push('', '### Memory', '');
    out.push(
      table(
        ['when', 'RSS MiB', 'peak RSS so far MiB', 'heap used MiB', 'heap total MiB'],
        [
          ['3 s after the last workspace turned Ready', ...mem(p.memoryAfterColdStart)],
          ['converged, after 30 s idle', ...mem(p.memoryConverged)],
          ['end of pass (after churn and changes)', ...mem(p.memoryAtEnd)],
        ],
      ),
    );

    out.push('', '### API cost', '');
    out.push(
      'Requests per workspace (create, resync) or per change, counted by the controller ' +
        '(`flyte_workspace_external_requests_total`; watch list/watch streams not included), until the queue is idle again, ' +
        "so follow-up reconciles caused by the controller's own writes are included.",
    );
    out.push('');
    out.push(
      table(
        [
          '',
          'units',
          'k8s reads',
          'k8s writes',
          'IAM reads',
          'IAM writes',
          'Flyte reads',
          'Flyte writes',
          'reconciles/unit',
        ],
        [
          costRows('create (cold start)', c.cost),
          costRows('no-op resync', p.resync.cost),
          costRows('user added', p.changeCost['add-user']),
          costRows('user removed', p.changeCost['remove-user']),
          costRows('tier changed', p.changeCost.tier),
          costRows('churn (mixed)', p.churn?.cost),
          costRows('restart (new process)', p.restart?.cost),
        ],
      ),
    );
    const k8sOps = c.cost.totals.kubernetes.byOperation;
    out.push(
      '',
      `Kubernetes operations on create: ${Object.entries(k8sOps)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}.`,
    );
    if (p.controllerErrors.length > 0) {
      out.push('', `Controller logged ${p.controllerErrors.length} error line(s); first: \`${p.controllerErrors[0]}\``);
    }
  }
  out.push('');
  return out.join('\n');
}
