// A Clock whose time moves only when a test says so. advance() fires due timers in time order and lets
// the promise chains they start settle between them, so async code driven by timers runs to its next wait.
import type { Clock, Timer } from '../src/kinds/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  private time = 0;
  private seq = 0;
  private readonly pending = new Set<Pending>();

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const p: Pending = { at: this.time + Math.max(0, ms), seq: this.seq++, fn };
    this.pending.add(p);
    return { cancel: () => this.pending.delete(p), unref: () => undefined };
  }

  /** Resolves after `ms` of fake time (for code under test that waits). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimer(resolve, ms));
  }

  /** Timers not yet fired or cancelled. */
  pendingTimers(): number {
    return this.pending.size;
  }

  /** Moves time forward by `ms`, firing every timer due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await settle();
      let next: Pending | undefined;
      for (const p of this.pending) {
        if (p.at <= end && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      }
      if (!next) break;
      this.pending.delete(next);
      this.time = next.at;
      next.fn();
    }
    this.time = end;
    await settle();
  }
}

/** Lets pending promise callbacks (and what they schedule with setImmediate) run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
