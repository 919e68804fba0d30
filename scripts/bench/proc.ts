// CPU accounting from /proc (Linux): per process (controller, kube-apiserver, etcd, KCM, this process) and
// machine-wide, so a phase can say who used the CPU and whether something else on the machine competed.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const TICKS = 100; // USER_HZ on Linux

/** user+system CPU seconds of a process (0 when it is gone). */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/** kube-apiserver / etcd / kube-controller-manager pids of a test control plane (its pid file and /proc). */
export function controlPlanePids(cp: { dir: string }): [string, number][] {
  try {
    return readFileSync(join(cp.dir, 'pids'), 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
      .filter((pid) => pid > 0)
      .map((pid) => {
        const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        return [comm.replace(/^kube-controller.*/, 'kube-controller-manager'), pid] as [string, number];
      });
  } catch {
    return [];
  }
}

/** Current (VmRSS) or peak (VmHWM) resident set of a process, in bytes (0 when it is gone). */
export function processRssBytes(pid: number, which: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`${which}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Machine-wide busy and total CPU seconds (all cores) since boot. */
export function machineCpu(): { busy: number; total: number } {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0] as string;
  const v = first.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) / TICKS, total: total / TICKS };
}

export interface CpuSnapshot {
  at: number;
  byName: Record<string, number>;
  machine: { busy: number; total: number };
}

export class CpuMeter {
  constructor(private readonly pids: () => Record<string, number>) {}

  snapshot(): CpuSnapshot {
    const byName: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids())) byName[name] = processCpuSeconds(pid);
    const self = process.cpuUsage();
    byName.bench = (self.user + self.system) / 1e6;
    return { at: performance.now(), byName, machine: machineCpu() };
  }
}

export interface CpuUsage {
  wallSeconds: number;
  /** CPU seconds per process over the interval. */
  seconds: Record<string, number>;
  /** CPU seconds used on the machine by everything else (other engineers' tests, …). */
  othersSeconds: number;
  /** Machine busy fraction over the interval (1 = every core busy). */
  machineBusy: number;
  loadavg1: number;
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUsage {
  const seconds: Record<string, number> = {};
  let ours = 0;
  for (const [name, v] of Object.entries(b.byName)) {
    // A process that started during the interval (the controller at cold start) counts from zero.
    const d = Math.max(0, v - (a.byName[name] ?? 0));
    seconds[name] = round(d, 2);
    ours += d;
  }
  const busy = b.machine.busy - a.machine.busy;
  const total = b.machine.total - a.machine.total;
  return {
    wallSeconds: round((b.at - a.at) / 1000, 2),
    seconds,
    othersSeconds: round(Math.max(0, busy - ours), 2),
    machineBusy: total > 0 ? round(busy / total, 2) : 0,
    loadavg1: round(loadavg()[0] ?? 0, 2),
  };
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
