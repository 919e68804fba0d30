// Semantic comparison of a desired object with the live one: "does live already contain everything we
// want?". Fields the server adds (defaults, status, metadata) do not count as drift; arrays must match
// element by element, so a removed subject or port does.
export function containsDesired(live: unknown, desired: unknown): boolean {
  if (desired === undefined) return true;
  if (desired === null) return live === null || live === undefined;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return false;
    return desired.every((d, i) => containsDesired(live[i], d));
  }
  if (typeof desired === 'object') {
    if (typeof live !== 'object' || live === null || Array.isArray(live)) {
      // An empty desired map matches an absent one: the server drops empty maps.
      return (live === undefined || live === null) && Object.keys(desired).length === 0;
    }
    for (const [k, v] of Object.entries(desired)) {
      if (!containsDesired((live as Record<string, unknown>)[k], v)) return false;
    }
    return true;
  }
  return live === desired;
}

/** Field paths where live differs from desired, for events and plan output. */
export function diffPaths(live: unknown, desired: unknown, path = ''): string[] {
  if (containsDesired(live, desired)) return [];
  if (desired && typeof desired === 'object' && !Array.isArray(desired) && live && typeof live === 'object') {
    return Object.entries(desired).flatMap(([k, v]) =>
      diffPaths((live as Record<string, unknown>)[k], v, path ? `${path}.${k}` : k),
    );
  }
  return [path || '(root)'];
}
