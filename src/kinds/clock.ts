// Time as the runtime components see it: a monotonic now() and one-shot timers. Production uses the
// system clock; unit tests pass a fake one (harness/fake-clock.ts) and move time themselves instead of
// sleeping.

export interface Timer {
  cancel(): void;
  /** Lets the process exit while this timer is pending (Node's unref). */
  unref(): void;
}

export interface Clock {
  /** Monotonic milliseconds (performance.now() on the system clock); only differences mean anything. */
  now(): number;
  /** Calls `fn` once, `ms` from now. */
  setTimer(fn: () => void, ms: number): Timer;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const handle = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(handle), unref: () => handle.unref() };
  },
};
