// Graceful shutdown: on SIGTERM/SIGINT (or shutdown() from code, e.g. leadership lost) run the registered
// hooks one after another, in registration order — typically: stop taking keys, wait for in-flight
// reconciles up to cfg.shutdownGraceSeconds, release the Lease, stop the HTTP servers, flush logs — then
// exit. A hard deadline (default grace + 3 s, below the Pod's terminationGracePeriodSeconds of 30 s) exits
// non-zero whatever is still running. shutdown() is idempotent; a second signal exits at once, as
// controller-runtime's signal handler does.
import type { Logger } from 'pino';
import type { ControllerConfig } from './config/config.js';

export interface ShutdownContext {
  /** Why shutdown began. */
  reason: string;
  /** Aborts when this hook's own timeout or the hard deadline passes. */
  signal: AbortSignal;
  /** Milliseconds left before the hard deadline. */
  remainingMs(): number;
}

export type ShutdownHook = (ctx: ShutdownContext) => void | Promise<void>;

export interface ShutdownOptions {
  /** Budget for waiting on in-flight work (cfg.shutdownGraceSeconds); hooks read it as `graceMs`. */
  graceSeconds: number;
  /** Total time allowed from the first signal to exit; default graceSeconds + 3. */
  hardDeadlineSeconds?: number;
  log?: Logger;
  /** Default process.exit. */
  exit?: (code: number) => void;
  /** Default ['SIGTERM', 'SIGINT']. */
  signals?: NodeJS.Signals[];
  /** Where signals are listened for; default process. */
  proc?: Pick<NodeJS.Process, 'on' | 'off'>;
}

interface RegisteredHook {
  name: string;
  fn: ShutdownHook;
  timeoutMs?: number;
}

export class ShutdownCoordinator {
  /** Milliseconds hooks may spend waiting for in-flight work. */
  readonly graceMs: number;
  readonly hardDeadlineMs: number;
  private readonly ctl = new AbortController();
  private readonly hooks: RegisteredHook[] = [];
  private readonly exit: (code: number) => void;
  private readonly signals: NodeJS.Signals[];
  private readonly proc: Pick<NodeJS.Process, 'on' | 'off'>;
  private readonly log: Logger | undefined;
  private running: Promise<number> | undefined;
  private installed = false;
  private exited = false;
  private readonly onSignal = (sig: NodeJS.Signals) => {
    if (this.running) {
      this.log?.warn({ signal: sig }, 'second signal during shutdown: exiting now');
      this.doExit(1);
      return;
    }
    void this.shutdown(`signal ${sig}`);
  };

  constructor(opts: ShutdownOptions) {
    this.graceMs = Math.max(0, opts.graceSeconds * 1000);
    this.hardDeadlineMs = (opts.hardDeadlineSeconds ?? opts.graceSeconds + 3) * 1000;
    this.log = opts.log;
    this.exit = opts.exit ?? ((code) => process.exit(code));
    this.signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
    this.proc = opts.proc ?? process;
  }

  /** Aborted as soon as shutdown begins: pass it to loops that should stop taking new work. */
  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  get shuttingDown(): boolean {
    return this.ctl.signal.aborted;
  }

  /** Adds a hook; hooks run sequentially in registration order. `timeoutMs` bounds this hook alone. */
  register(name: string, fn: ShutdownHook, opts: { timeoutMs?: number } = {}): this {
    this.hooks.push({ name, fn, timeoutMs: opts.timeoutMs });
    return this;
  }

  /** Starts listening for the termination signals. */
  install(): this {
    if (this.installed) return this;
    this.installed = true;
    for (const s of this.signals) this.proc.on(s, this.onSignal);
    return this;
  }

  uninstall(): void {
    if (!this.installed) return;
    this.installed = false;
    for (const s of this.signals) this.proc.off(s, this.onSignal);
  }

  /**
   * Runs the hooks and exits with `exitCode` (default 0; 1 if a hook failed or timed out, or the hard
   * deadline passed). Idempotent: later calls return the first call's promise. Resolves to the exit code.
   */
  shutdown(reason: string, opts: { exitCode?: number } = {}): Promise<number> {
    if (this.running) return this.running;
    this.ctl.abort(new Error(`shutting down: ${reason}`));
    this.running = this.runHooks(reason, opts.exitCode ?? 0);
    return this.running;
  }

  private async runHooks(reason: string, requestedCode: number): Promise<number> {
    const started = performance.now();
    const deadlineAt = started + this.hardDeadlineMs;
    const remainingMs = () => Math.max(0, deadlineAt - performance.now());
    this.log?.info(
      { reason, graceSeconds: this.graceMs / 1000, hardDeadlineSeconds: this.hardDeadlineMs / 1000 },
      'shutting down',
    );

    const hard = new AbortController();
    const hardTimer = setTimeout(() => {
      hard.abort(new Error('shutdown hard deadline passed'));
      this.log?.error(
        { reason, afterMs: Math.round(performance.now() - started) },
        'shutdown hard deadline passed: exiting',
      );
      this.doExit(1);
    }, this.hardDeadlineMs);

    let code = requestedCode;
    for (const hook of this.hooks) {
      if (hard.signal.aborted) break;
      const signals = [hard.signal];
      if (hook.timeoutMs !== undefined) signals.push(AbortSignal.timeout(hook.timeoutMs));
      const signal = AbortSignal.any(signals);
      const t0 = performance.now();
      try {
        await runUntilAborted(() => hook.fn({ reason, signal, remainingMs }), signal);
        if (signal.aborted) {
          code = code || 1;
          this.log?.warn({ hook: hook.name, ms: Math.round(performance.now() - t0) }, 'shutdown hook timed out');
        } else {
          this.log?.debug({ hook: hook.name, ms: Math.round(performance.now() - t0) }, 'shutdown hook done');
        }
      } catch (err) {
        code = code || 1;
        this.log?.error({ err, hook: hook.name }, 'shutdown hook failed');
      }
    }
    clearTimeout(hardTimer);
    if (hard.signal.aborted) return 1;
    this.uninstall();
    this.doExit(code);
    return code;
  }

  private doExit(code: number): void {
    if (this.exited) return;
    this.exited = true;
    this.exit(code);
  }
}

/** Runs fn; settles when fn settles or when signal aborts (whichever first). Rethrows fn's error. */
async function runUntilAborted(fn: () => void | Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([Promise.resolve().then(fn), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** Resolves true if `p` settles within `ms`, false otherwise (never rejects). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The coordinator for the daemon, from the configuration. */
export function createShutdown(
  cfg: Pick<ControllerConfig, 'shutdownGraceSeconds'>,
  log?: Logger,
  opts: Partial<Omit<ShutdownOptions, 'graceSeconds' | 'log'>> = {},
): ShutdownCoordinator {
  return new ShutdownCoordinator({ graceSeconds: cfg.shutdownGraceSeconds, log, ...opts });
}
