// What a single-node cluster changes on its host, recorded before and put back after: the kubelet sets
// kernel sysctls and adds iptables chains, the CNI bridge plugin enables forwarding and adds masquerade
// rules, the kubelet creates cgroups, containerd and the kubelet leave mounts and network namespaces.
// The record is a file, so a run that crashed (SIGKILL, power loss) is cleaned up by the next one.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** sysctls the kubelet (protectKernelDefaults off) and the CNI bridge plugin may change. */
const SYSCTLS = [
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'net.ipv4.ip_forward',
  'net.ipv6.conf.all.forwarding',
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables',
];
const IPTABLES_TABLES = ['filter', 'nat', 'mangle'];
/** Only rules and chains of these names are ever removed: what other software adds meanwhile stays. */
const OURS = /KUBE-|CNI-|FWC-|fwc-node/;
/** Paths the kubelet or containerd create by default even when told to use other directories. */
const DEFAULT_PATHS = [
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/run/containerd',
  '/var/lib/cni',
  '/etc/kubernetes',
];
const CGROUP_ROOT = '/sys/fs/cgroup';

export interface HostRecord {
  /** The process that made the changes (a record whose owner is gone means a crashed run). */
  ownerPid: number;
  /** Its start time in clock ticks since boot, so a reused pid is not mistaken for it. */
  ownerStart: string;
  startedAt: string;
  baseDir: string;
  sysctls: Record<string, string>;
  iptables: Record<'iptables' | 'ip6tables', Record<string, string[]>>;
  bridge: { name: string; created: boolean };
  netns: string[];
  existingPaths: string[];
  cgroups: string[];
}

const recordFile = (baseDir: string) => join(baseDir, 'host-record.json');

function sysctlPath(name: string): string {
  return `/proc/sys/${name.replaceAll('.', '/')}`;
}

function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of SYSCTLS) {
    const p = sysctlPath(name);
    if (existsSync(p)) out[name] = readFileSync(p, 'utf8').trim();
  }
  return out;
}

function iptablesRules(bin: 'iptables' | 'ip6tables'): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const table of IPTABLES_TABLES) {
    const r = spawnSync(bin, ['-w', '5', '-t', table, '-S'], { encoding: 'utf8' });
    out[table] = r.status === 0 ? r.stdout.split('\n').filter(Boolean) : [];
  }
  return out;
}

function netnsNames(): string[] {
  return existsSync('/run/netns') ? readdirSync('/run/netns') : [];
}

/** Top-level kubelet cgroups (kubepods, kubepods.slice) under every hierarchy. */
function kubeletCgroups(): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  const out: string[] = [];
  const roots = [CGROUP_ROOT, ...readdirSync(CGROUP_ROOT).map((d) => join(CGROUP_ROOT, d))];
  for (const root of roots) {
    try {
      if (!statSync(root).isDirectory()) continue;
      for (const name of readdirSync(root)) if (name.startsWith('kubepods')) out.push(join(root, name));
    } catch {
      // not a readable hierarchy
    }
  }
  return out;
}

function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', name], { stdio: 'ignore' }).status === 0;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Runs a cleanup step; failures are collected, not thrown, so one stuck step does not stop the others. */
function attempt(problems: string[], what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    const err = e as { stderr?: Buffer | string; message?: string };
    problems.push(`${what}: ${String(err.stderr ?? '').trim() || err.message}`);
  }
}

export interface BridgeSpec {
  name: string;
  /** The host's address on it, with prefix length, e.g. 10.244.0.1/24. */
  address: string;
}

/**
 * Records the host's state to `baseDir/host-record.json` (cleaning up after a crashed earlier run first),
 * then creates the bridge. Call before anything else changes the host.
 */
export function prepareHost(baseDir: string, bridge: BridgeSpec, log: (m: string) => void): HostRecord {
  if (existsSync(recordFile(baseDir))) {
    const previous = JSON.parse(readFileSync(recordFile(baseDir), 'utf8')) as HostRecord;
    if (previous.ownerPid !== process.pid && startTicks(previous.ownerPid) === previous.ownerStart) {
      throw new Error(
        `another real-node run (pid ${previous.ownerPid}, started ${previous.startedAt}) is using ${baseDir}; one node per host`,
      );
    }
    log(`a previous run (pid ${previous.ownerPid}, ${previous.startedAt}) did not clean up: restoring the host first`);
    const problems = restoreHost(baseDir, log);
    if (problems.length > 0) throw new Error(`cleanup of the previous run failed:\n  - ${problems.join('\n  - ')}`);
  }
  const record: HostRecord = {
    ownerPid: process.pid,
    ownerStart: startTicks(process.pid),
    startedAt: new Date().toISOString(),
    baseDir,
    sysctls: readSysctls(),
    iptables: { iptables: iptablesRules('iptables'), ip6tables: iptablesRules('ip6tables') },
    bridge: { name: bridge.name, created: !linkExists(bridge.name) },
    netns: netnsNames(),
    existingPaths: DEFAULT_PATHS.filter((p) => existsSync(p)),
    cgroups: kubeletCgroups(),
  };
  writeFileSync(recordFile(baseDir), JSON.stringify(record, null, 2));
  if (record.bridge.created) {
    run('ip', ['link', 'add', bridge.name, 'type', 'bridge']);
    run('ip', ['addr', 'add', bridge.address, 'dev', bridge.name]);
    run('ip', ['link', 'set', bridge.name, 'up']);
  }
  return record;
}

function startTicks(pid: number): string {
  try {
    // Field 22 of /proc/<pid>/stat; the command name (field 2) may hold spaces, so count after its ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Every process whose command line mentions the base dir (ours: containerd, shims, kubelet...). */
function processesUsing(baseDir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid || pid === process.ppid) continue;
    const cmdline = cmdlineOf(pid);
    // Not the restore itself (its arguments name the base dir too), nor the watchdog that started it.
    if (cmdline.includes(baseDir) && !/restore-host|fwc-node-watchdog/.test(cmdline)) out.push(pid);
  }
  return out;
}

interface Mount {
  point: string;
}

function mounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => ({
      point: (line.split(' ')[4] ?? '').replace(/\\(\d{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    }));
}

function unmountUnder(prefixes: string[], problems: string[]): number {
  const targets = mounts()
    .map((m) => m.point)
    .filter((p) => prefixes.some((pre) => p === pre || p.startsWith(`${pre}/`)))
    .sort((a, b) => b.length - a.length);
  for (const p of [...new Set(targets)]) {
    if (spawnSync('umount', [p], { stdio: 'ignore' }).status !== 0) {
      attempt(problems, `umount ${p}`, () => run('umount', ['-l', p]));
    }
  }
  return targets.length;
}

function deleteNewIptables(bin: 'iptables' | 'ip6tables', before: Record<string, string[]>, problems: string[]): void {
  if (spawnSync(bin, ['-V'], { stdio: 'ignore' }).status !== 0) return;
  const now = iptablesRules(bin);
  for (const table of IPTABLES_TABLES) {
    const had = new Set(before[table] ?? []);
    const added = (now[table] ?? []).filter((l) => !had.has(l) && OURS.test(l));
    // Rules first (they may jump to the chains), then the chains themselves.
    for (const rule of added.filter((l) => l.startsWith('-A '))) {
      attempt(problems, `${bin} -t ${table} ${rule}`, () =>
        run('sh', ['-c', `${bin} -w 5 -t ${table} -D ${rule.slice(3)}`]),
      );
    }
    for (const chain of added.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3).trim())) {
      attempt(problems, `${bin} -t ${table} -X ${chain}`, () => {
        run(bin, ['-w', '5', '-t', table, '-F', chain]);
        run(bin, ['-w', '5', '-t', table, '-X', chain]);
      });
    }
  }
}

function removeCgroup(dir: string): void {
  // cgroup directories go bottom-up; files inside them are virtual and need no removal.
  for (const name of readdirSync(dir)) {
    const child = join(dir, name);
    try {
      if (statSync(child).isDirectory()) removeCgroup(child);
    } catch {
      // raced with the kernel
    }
  }
  rmdirSync(dir);
}

/**
 * Puts the host back as the record says: kills what the run left, unmounts, deletes its iptables rules
 * and chains, sysctls, bridge, network namespaces, cgroups and default directories. Returns what failed
 * (empty when all is back). The record is removed only when nothing failed.
 */
export function restoreHost(baseDir: string, log: (m: string) => void): string[] {
  const problems: string[] = [];
  if (!existsSync(recordFile(baseDir))) return problems;
  const record = JSON.parse(readFileSync(recordFile(baseDir), 'utf8')) as HostRecord;

  const leftover = processesUsing(baseDir);
  if (leftover.length > 0) {
    log(`killing ${leftover.length} leftover process(es): ${leftover.join(' ')}`);
    for (const pid of leftover) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  // Containers outlive a killed shim: runc's state for our containerd lives under the base dir.
  const runcRoot = join(baseDir, 'run', 'runc');
  if (existsSync(runcRoot)) {
    for (const ns of readdirSync(runcRoot)) {
      const root = join(runcRoot, ns);
      const list = spawnSync('runc', ['--root', root, 'list', '-q'], { encoding: 'utf8' });
      for (const id of (list.stdout ?? '').split('\n').filter(Boolean)) {
        attempt(problems, `runc delete ${id}`, () => run('runc', ['--root', root, 'delete', '--force', id]));
      }
    }
  }

  const newNetns = netnsNames().filter((n) => n.startsWith('cni-') && !record.netns.includes(n));
  const unmounted = unmountUnder([baseDir, ...newNetns.map((n) => `/run/netns/${n}`)], problems);
  for (const n of newNetns) attempt(problems, `remove netns ${n}`, () => rmSync(`/run/netns/${n}`, { force: true }));

  deleteNewIptables('iptables', record.iptables.iptables, problems);
  deleteNewIptables('ip6tables', record.iptables.ip6tables, problems);

  const now = readSysctls();
  for (const [name, value] of Object.entries(record.sysctls)) {
    if (now[name] !== undefined && now[name] !== value) {
      attempt(problems, `sysctl ${name}=${value}`, () => writeFileSync(sysctlPath(name), value));
    }
  }

  if (record.bridge.created && linkExists(record.bridge.name)) {
    attempt(problems, `delete bridge ${record.bridge.name}`, () => run('ip', ['link', 'delete', record.bridge.name]));
  }
  for (const cg of kubeletCgroups().filter((c) => !record.cgroups.includes(c))) {
    attempt(problems, `remove cgroup ${cg}`, () => removeCgroup(cg));
  }
  for (const p of DEFAULT_PATHS.filter((p) => !record.existingPaths.includes(p) && existsSync(p))) {
    attempt(problems, `remove ${p}`, () => rmSync(p, { recursive: true, force: true }));
  }
  // Per-run directories go; caches (containerd's image store, the pause image) stay for the next run.
  for (const d of ['run', 'kubelet', 'pod-logs', 'cni']) {
    attempt(problems, `remove ${join(baseDir, d)}`, () => rmSync(join(baseDir, d), { recursive: true, force: true }));
  }
  log(`host restored (${unmounted} mount(s) removed)${problems.length ? `, ${problems.length} problem(s)` : ''}`);
  if (problems.length === 0) rmSync(recordFile(baseDir), { force: true });
  return problems;
}
