// The built controller (`node dist/cli.js run`) as a child process: the one launcher behind `npm run local`,
// the benchmark and the out-of-process tests. It writes the config file, gives the child fake AWS
// credentials and nothing of the caller's cloud or kube environment, reads its JSON log lines, and can
// stop, kill or freeze it.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, createWriteStream, openSync, type WriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Samples, scrapeMetrics } from './metrics-text.js';

export const REPO_ROOT = join(import.meta.dirname, '..');
export const CLI = join(REPO_ROOT, 'dist', 'cli.js');
/** Credentials moto accepts; the controller's AWS SDK finds them in its environment. */
export const FAKE_AWS_ENV = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' };
/** The log line after which the HTTP servers are listening; it carries the identity and both ports. */
export const STARTING_MESSAGE = 'flyte-workspace-controller starting';

export interface LogLine {
  level?: string | number;
  msg?: string;
  time?: string;
  [k: string]: unknown;
}

export interface ControllerProcessOptions {
  /** For messages and the config file's name. */
  name: string;
  /** The config: a file path, or an object written to `<dir>/<name>-<n>.config.json`. */
  config: string | Record<string, unknown>;
  kubeconfig: string;
  /** Where an object config is written. */
  dir?: string;
  /** Added to the child's environment last. */
  env?: Record<string, string>;
  /**
   * `clean` (the default) inherits this process's environment minus anything that could point the controller
   * elsewhere (FWC_*, AWS_*, KUBECONFIG, VITEST*); `minimal` passes only PATH and HOME, as a container would.
   */
  baseEnv?: 'clean' | 'minimal';
  /** Arguments for node itself, before the script (e.g. heap flags). */
  nodeArgs?: string[];
  /** Every log line also goes to this file. */
  logFile?: string;
  /**
   * false: the child writes straight into `logFile` and this process reads nothing (waitForLog and the
   * ports are unavailable). For a long interactive run whose log a person follows with `tail -f`.
   */
  captureLogs?: boolean;
  /** Own process group, so a terminal's Ctrl-C reaches only this process, which then stops the child in order. */
  detached?: boolean;
  /** A detached shell that stops the child (SIGTERM, SIGKILL 10 s later) if this process dies without doing so. */
  watchdog?: boolean;
  /** Keep only the last this many lines in `logs`/`records` (a benchmark's controller logs for a long time). */
  keepLines?: number;
  /** Called for each log line as it arrives, before any waiter (for timestamps taken on arrival). */
  onLog?: (record: LogLine, line: string) => void;
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
let configFiles = 0;

export class ControllerProcess {
  /** Raw log lines (stdout and stderr), in arrival order. */
  readonly logs: string[] = [];
  /** The same lines parsed (a line that is not JSON becomes `{ msg: line }`). */
  readonly records: LogLine[] = [];
  readonly startedAt = performance.now();
  readonly configPath: string;
  identity = '';
  metricsPort = 0;
  healthPort = 0;
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  private readonly waiters = new Set<(record?: LogLine) => void>();
  private readonly keepLines: number;
  private readonly onLog: ((record: LogLine, line: string) => void) | undefined;
  private readonly watchdog: ChildProcess | undefined;
  private readonly logStream: WriteStream | undefined;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    configPath: string,
    o: ControllerProcessOptions,
  ) {
    this.configPath = configPath;
    this.keepLines = o.keepLines ?? Number.POSITIVE_INFINITY;
    this.onLog = o.onLog;
    live.add(child);
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': by then stdout and stderr are drained, so no last line arrives after the exit.
      child.once('close', (code, signal) => {
        live.delete(child);
        this.exit = { code, signal };
        for (const w of this.waiters) w();
        resolve(this.exit);
      });
    });
    if (o.captureLogs !== false) {
      this.logStream = o.logFile ? createWriteStream(o.logFile) : undefined;
      for (const stream of [child.stdout, child.stderr]) {
        let pending = '';
        stream?.setEncoding('utf8');
        stream?.on('data', (chunk: string) => {
          const text = pending + chunk;
          const cut = text.lastIndexOf('\n');
          pending = text.slice(cut + 1);
          if (cut >= 0) this.onLines(text.slice(0, cut));
        });
        stream?.on('end', () => {
          if (pending) this.onLines(pending);
          pending = '';
        });
      }
    }
    if (o.watchdog) {
      this.watchdog = spawn(
        'sh',
        [
          '-c',
          'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -TERM "$2" 2>/dev/null; sleep 10; kill -KILL "$2" 2>/dev/null',
          `fwc-${o.name}-watchdog`,
          String(process.pid),
          String(child.pid),
        ],
        { detached: true, stdio: 'ignore' },
      );
      this.watchdog.unref();
    }
  }

  /** Spawns the controller; returns at once (see `started()`). */
  static spawn(o: ControllerProcessOptions): ControllerProcess {
    let configPath: string;
    if (typeof o.config === 'string') configPath = o.config;
    else {
      if (!o.dir) throw new Error(`controller ${o.name}: an object config needs a dir to be written to`);
      configPath = join(o.dir, `${o.name}-${++configFiles}.config.json`);
      writeFileSync(configPath, JSON.stringify(o.config, null, 2));
    }
    const base: Record<string, string> = {};
    if (o.baseEnv === 'minimal') {
      base.PATH = process.env.PATH ?? '';
      base.HOME = process.env.HOME ?? '/tmp';
    } else {
      for (const [k, v] of Object.entries(process.env)) {
        if (v === undefined || /^(FWC_|AWS_|VITEST)/.test(k) || k === 'KUBECONFIG') continue;
        base[k] = v;
      }
    }
    const env = { ...base, ...FAKE_AWS_ENV, AWS_EC2_METADATA_DISABLED: 'true', ...o.env };
    const args = [...(o.nodeArgs ?? []), CLI, 'run', '--config', configPath, '--kubeconfig', o.kubeconfig];
    const capture = o.captureLogs !== false;
    if (!capture && !o.logFile) throw new Error(`controller ${o.name}: captureLogs false needs a logFile`);
    const fd = capture ? undefined : openSync(o.logFile as string, 'w');
    try {
      const child = spawn(process.execPath, args, {
        cwd: REPO_ROOT,
        env,
        stdio: fd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd],
        detached: o.detached ?? false,
      });
      return new ControllerProcess(o.name, child, configPath, o);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** Spawns the controller and waits until its HTTP servers listen (identity and ports are then known). */
  static async start(o: ControllerProcessOptions, timeoutMs = 30_000): Promise<ControllerProcess> {
    return ControllerProcess.spawn(o).started(timeoutMs);
  }

  /** Resolves once the controller logged its ports; rejects if it exits or stays silent for `timeoutMs`. */
  async started(timeoutMs = 30_000): Promise<this> {
    const line = await this.waitForLog((l) => l.msg === STARTING_MESSAGE, timeoutMs);
    this.identity = String(line.identity ?? '');
    this.metricsPort = Number(line.metricsPort);
    this.healthPort = Number(line.healthPort);
    return this;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Resolves with the first log line (past or future) matching `pred`; rejects if the process exits first. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      // Each new line is checked as it arrives, so a bounded log cannot drop a match before it is seen.
      const check = (record?: LogLine) => {
        const hit = record ? (pred(record) ? record : undefined) : this.records.find(pred);
        if (hit) {
          cleanup();
          resolve(hit);
        } else if (this.exit) {
          cleanup();
          reject(new Error(`controller ${this.name} exited (${JSON.stringify(this.exit)}) first:\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`controller ${this.name}: log line not seen within ${timeoutMs} ms:\n${this.tail()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  hasLog(pred: (l: LogLine) => boolean): boolean {
    return this.records.some(pred);
  }

  /** The last `n` log lines, for failure messages. */
  tail(n = 40): string {
    return this.logs.slice(-n).join('\n');
  }

  /** Sends `signal` if the process still runs (SIGSTOP/SIGCONT freeze and thaw it). */
  signal(signal: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(signal);
  }

  /** Sends `signal` (SIGKILL by default) and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.exit) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves with the exit. */
  async stop(graceMs = 15_000): Promise<Exit> {
    if (!this.exit) {
      this.child.kill('SIGTERM');
      const exit = await Promise.race([this.exited, sleep(graceMs).then(() => undefined)]);
      if (!exit) this.child.kill('SIGKILL');
    }
    const exit = await this.exited;
    this.watchdog?.kill('SIGKILL');
    this.logStream?.end();
    return exit;
  }

  async http(port: 'metrics' | 'health', path: string): Promise<{ status: number; body: string; contentType: string }> {
    const p = port === 'metrics' ? this.metricsPort : this.healthPort;
    const res = await fetch(`http://127.0.0.1:${p}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
  }

  /** The controller's /metrics, parsed. */
  scrape(): Promise<Samples> {
    return scrapeMetrics(`http://127.0.0.1:${this.metricsPort}/metrics`);
  }

  /** Sum of flyte_workspace_external_requests_total{access="write"}: Kubernetes, IAM and FlyteAdmin writes. */
  async writeCount(): Promise<number> {
    return (await this.scrape()).sum('flyte_workspace_external_requests_total', { access: 'write' });
  }

  private onLines(text: string): void {
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      this.logs.push(line);
      this.logStream?.write(`${line}\n`);
      let record: LogLine;
      try {
        const parsed: unknown = JSON.parse(line);
        record = parsed && typeof parsed === 'object' ? (parsed as LogLine) : { msg: line };
      } catch {
        record = { msg: line };
      }
      this.records.push(record);
      if (this.logs.length > this.keepLines) {
        this.logs.shift();
        this.records.shift();
      }
      this.onLog?.(record, line);
      for (const w of this.waiters) w(record);
    }
  }
}
