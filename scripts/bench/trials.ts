// Cold-start trial scheduling for scripts/bench.ts: pure, so it is unit-tested.

export type TrialKind = 'baseline' | 'protocol' | 'controller';

/**
 * The cold-start trials of `rounds` rounds. Each round runs the baseline, the protocol baseline and the
 * controller; successive rounds reverse the order (ABBA), so a machine that drifts faster or slower over
 * the run favours neither side. The last round ends with the controller: that trial goes on into the pass.
 */
export function trialOrder(rounds: number): { round: number; kind: TrialKind }[] {
  const out: { round: number; kind: TrialKind }[] = [];
  for (let round = 0; round < rounds; round++) {
    const forward = (rounds - 1 - round) % 2 === 0;
    const kinds: TrialKind[] = forward
      ? ['baseline', 'protocol', 'controller']
      : ['controller', 'protocol', 'baseline'];
    for (const kind of kinds) out.push({ round, kind });
  }
  return out;
}

export function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
