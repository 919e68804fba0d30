// A counting semaphore with FIFO waiters (golang.org/x/sync/semaphore.Weighted with weight 1): at most
// `max` holders at once, and a released slot is handed straight to the longest waiter, so a newcomer can
// never overtake the queue. A waiter may bound its wait; the injectable clock keeps that testable.
import { type Clock, systemClock, type Timer } from '../kinds/clock.js';

/** Gives the slot back; calling it again is a no-op. */
export type Release = () => void;

interface Waiter {
  grant: () => void;
  timer?: Timer;
}

export class Semaphore {
  private held = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly max: number,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(max >= 1)) throw new Error('Semaphore: max must be >= 1');
  }

  /** Slots held now. */
  get inFlight(): number {
    return this.held;
  }

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.waiters.length;
  }

  /** A slot, once one is free. */
  async acquire(): Promise<Release> {
    return (await this.acquireWithin(Number.POSITIVE_INFINITY)) as Release;
  }

  /**
   * A slot, or undefined when none came free within `waitMs` (a free slot is taken at once, whatever
   * `waitMs` says). A waiter that gives up leaves the queue.
   */
  acquireWithin(waitMs: number): Promise<Release | undefined> {
    if (this.held < this.max) {
      this.held++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: () => {
          waiter.timer?.cancel();
          resolve(this.releaser());
        },
      };
      if (Number.isFinite(waitMs)) {
        waiter.timer = this.clock.setTimer(
          () => {
            const i = this.waiters.indexOf(waiter);
            if (i >= 0) this.waiters.splice(i, 1);
            resolve(undefined);
          },
          Math.max(0, waitMs),
        );
      }
      this.waiters.push(waiter);
    });
  }

  /** Runs `fn` holding a slot; waiting for the slot is unbounded. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Hand the slot over without freeing it in between, so no caller can slip in ahead of the queue.
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.held--;
    };
  }
}
