// A token bucket with reservations (golang.org/x/time/rate's Reserve, as client-go's BucketRateLimiter
// uses it): tokens refill at `ratePerSecond` up to `burst`, and each reservation takes one token even when
// the bucket is empty, going into debt. The debt is the caller's wait, so callers are served in the order
// they reserved and a burst of them is spread at the rate once the first `burst` have gone.
import { type Clock, systemClock } from '../kinds/clock.js';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly clock: Clock = systemClock,
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new Error('TokenBucket: rate must be > 0 and burst >= 1');
    this.tokens = burst;
    this.last = clock.now();
  }

  /** Milliseconds the caller must wait for its token (0 = go now); the token is taken either way. */
  reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.ratePerSecond) * 1000;
  }

  /** Reserves a token and waits until it is due. */
  async take(): Promise<void> {
    const wait = this.reserve();
    if (wait > 0) await new Promise<void>((resolve) => this.clock.setTimer(resolve, Math.ceil(wait)));
  }
}
