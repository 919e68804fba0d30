import { describe, expect, it } from 'vitest';
import { medianOf, trialOrder } from '../../scripts/bench/trials.js';

describe('benchmark cold-start trials', () => {
  it('runs one round as baseline, protocol baseline, controller', () => {
    expect(trialOrder(1).map((t) => t.kind)).toEqual(['baseline', 'protocol', 'controller']);
  });

  it('alternates the order between rounds (ABBA) and always ends with the controller of the last round', () => {
    const two = trialOrder(2).map((t) => `${t.round}:${t.kind}`);
    expect(two).toEqual(['0:controller', '0:protocol', '0:baseline', '1:baseline', '1:protocol', '1:controller']);
    for (const rounds of [1, 2, 3, 4]) {
      const order = trialOrder(rounds);
      expect(order).toHaveLength(rounds * 3);
      expect(order.at(-1)).toEqual({ round: rounds - 1, kind: 'controller' });
      // Every kind is as often early as late in its round: the mean position of each kind is the same
      // for an even number of rounds.
      if (rounds % 2 === 0) {
        const meanPosition = (kind: string) => order.reduce((a, t, i) => a + (t.kind === kind ? i % 3 : 0), 0) / rounds;
        expect(meanPosition('baseline')).toBe(meanPosition('controller'));
      }
    }
  });

  it('takes the median of odd and even counts', () => {
    expect(medianOf([3, 1, 2])).toBe(2);
    expect(medianOf([4, 1, 3, 2])).toBe(2.5);
    expect(medianOf([7])).toBe(7);
  });
});
