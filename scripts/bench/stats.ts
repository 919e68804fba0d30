// Latency percentiles for the benchmark's change and removal measurements.
import { round } from './proc.js';

/** The p-th percentile (nearest rank) of ascending `sorted`, rounded to whole ms. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return round(sorted[i] as number, 0);
}

export interface LatencySummary {
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/** p50/p95/p99, max and mean of ascending latencies (ms). */
export function latencySummary(sorted: number[]): LatencySummary {
  return {
    p50Ms: percentile(sorted, 50),
    p95Ms: percentile(sorted, 95),
    p99Ms: percentile(sorted, 99),
    maxMs: round(sorted.at(-1) ?? 0, 0),
    meanMs: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length), 0),
  };
}
