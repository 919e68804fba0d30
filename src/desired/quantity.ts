// Kubernetes resource quantities compared by value: the API server stores canonical forms ("0.5" comes
// back as "500m", "1024Mi" as "1Gi"), so string equality would report drift forever.
const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Parses a quantity to a number (undefined when it is not one). Precision is ample for quotas. */
export function parseQuantity(q: string): number | undefined {
  const m = /^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)$/.exec(q.trim());
  if (!m) return undefined;
  const factor = SUFFIX[m[3] ?? ''];
  if (factor === undefined) return undefined;
  return Number(m[1]) * 10 ** Number(m[2] ?? 0) * factor;
}

export function sameQuantity(a: unknown, b: unknown): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return a === b;
  if (a === b) return true;
  const x = parseQuantity(a);
  const y = parseQuantity(b);
  return x !== undefined && y !== undefined && Math.abs(x - y) <= Math.abs(y) * 1e-9;
}
