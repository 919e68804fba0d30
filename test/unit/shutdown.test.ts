import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { createShutdown, ShutdownCoordinator, settlesWithin } from '../../src/shutdown.js';

function setup(opts: { grace?: number; hard?: number } = {}) {
  const proc = new EventEmitter();
  const exits: number[] = [];
  const sd = new ShutdownCoordinator({
    graceSeconds: opts.grace ?? 1,
    hardDeadlineSeconds: opts.hard,
    exit: (code) => exits.push(code),
    proc: proc as unknown as NodeJS.Process,
  }).install();
  return { proc, exits, sd };
}

describe('ShutdownCoordinator', () => {
  it('runs hooks in order on SIGTERM, aborts its signal first, exits 0, and is idempotent', async () => {
    const { proc, exits, sd } = setup();
    const order: string[] = [];
    let signalAbortedInFirstHook = false;
    sd.register('stop-queue', () => {
      signalAbortedInFirstHook = sd.signal.aborted;
      order.push('stop-queue');
    })
      .register('drain', async () => {
        await new Promise((r) => setTimeout(r, 50));
        order.push('drain');
      })
      .register('release-lease', () => {
        order.push('release-lease');
      })
      .register('stop-servers', async () => {
        order.push('stop-servers');
      })
      .register('flush-logs', () => {
        order.push('flush-logs');
      });
    expect(sd.shuttingDown).toBe(false);
    proc.emit('SIGTERM', 'SIGTERM');
    expect(sd.shuttingDown).toBe(true);
    const p1 = sd.shutdown('again');
    const p2 = sd.shutdown('and again');
    expect(p1).toBe(p2);
    expect(await p1).toBe(0);
    expect(order).toEqual(['stop-queue', 'drain', 'release-lease', 'stop-servers', 'flush-logs']);
    expect(signalAbortedInFirstHook).toBe(true);
    expect(exits).toEqual([0]);
    expect(proc.listenerCount('SIGTERM')).toBe(0);
  });

  it('keeps going after a failing hook and exits 1; honours a requested exit code', async () => {
    const { exits, sd } = setup();
    const order: string[] = [];
    sd.register('bad', () => {
      throw new Error('nope');
    }).register('after', () => {
      order.push('after');
    });
    expect(await sd.shutdown('test')).toBe(1);
    expect(order).toEqual(['after']);
    expect(exits).toEqual([1]);

    const other = setup();
    expect(await other.sd.shutdown('leader election lost', { exitCode: 1 })).toBe(1);
    expect(other.exits).toEqual([1]);
  });

  it('bounds a hook by its own timeout and passes it an aborting signal', async () => {
    const { exits, sd } = setup();
    let sawAbort = false;
    const order: string[] = [];
    sd.register(
      'hang',
      ({ signal }) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
            resolve();
          });
        }),
      { timeoutMs: 100 },
    ).register('next', () => {
      order.push('next');
    });
    const t0 = Date.now();
    expect(await sd.shutdown('test')).toBe(1);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(sawAbort).toBe(true);
    expect(order).toEqual(['next']);
    expect(exits).toEqual([1]);
  });

  it('exits non-zero at the hard deadline even if a hook never returns', async () => {
    const { exits, sd } = setup({ grace: 0.1, hard: 0.3 });
    let remainingAtStart = -1;
    sd.register('forever', ({ remainingMs }) => {
      remainingAtStart = remainingMs();
      return new Promise<void>(() => {});
    });
    const t0 = Date.now();
    expect(await sd.shutdown('test')).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(exits).toEqual([1]);
    expect(remainingAtStart).toBeGreaterThan(200);
    expect(remainingAtStart).toBeLessThanOrEqual(300);
  });

  it('a second signal during shutdown exits at once', async () => {
    const { proc, exits, sd } = setup();
    let release: () => void = () => {};
    sd.register('slow', () => new Promise<void>((r) => (release = r)));
    proc.emit('SIGINT', 'SIGINT');
    await new Promise((r) => setTimeout(r, 10));
    proc.emit('SIGINT', 'SIGINT');
    expect(exits).toEqual([1]);
    release();
    await sd.shutdown('x');
    expect(exits).toEqual([1]); // exit is called once
  });

  it('createShutdown takes the grace period from the config; settlesWithin bounds a wait', async () => {
    const sd = createShutdown({ shutdownGraceSeconds: 25 }, undefined, { exit: () => {} });
    expect(sd.graceMs).toBe(25_000);
    expect(sd.hardDeadlineMs).toBe(28_000);
    expect(await settlesWithin(Promise.resolve(), 50)).toBe(true);
    expect(await settlesWithin(Promise.reject(new Error('x')), 50)).toBe(true);
    expect(await settlesWithin(new Promise(() => {}), 50)).toBe(false);
  });
});
