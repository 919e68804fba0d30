// Reads the Prometheus text format the controller (prom-client) and kube-apiserver serve on /metrics: the one
// parser the tests, `npm run local` and the benchmarks share.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One scrape: every sample, the `# TYPE` of each family, and when it was taken (performance.now()). */
export class Samples {
  constructor(
    readonly all: Sample[],
    readonly types: Map<string, string> = new Map(),
    readonly at: number = performance.now(),
  ) {}

  /** Samples of `name` whose labels include every pair of `labels`. */
  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample matching, or undefined. Throws if several match. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.find(name, labels);
    if (found.length > 1) throw new Error(`${name}${JSON.stringify(labels)} matches ${found.length} samples`);
    return found[0]?.value;
  }

  sum(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((a, s) => a + s.value, 0);
  }
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses an exposition; a line that is neither a comment nor a sample is an error, not a silent skip. */
export function parseMetrics(text: string, at: number = performance.now()): Samples {
  const all: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (name && type) types.set(name, type);
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const raw = m[3] as string;
    const value = raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? Number.NEGATIVE_INFINITY : Number(raw);
    all.push({ name: m[1] as string, labels, value });
  }
  return new Samples(all, types, at);
}

/** GETs and parses a /metrics URL. */
export async function scrapeMetrics(url: string, timeoutMs = 10_000): Promise<Samples> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

/**
 * Sum of the samples of `name` whose label set, written `{k="v",…}` in exposition order, matches `labels`
 * (a pattern such as /access="write"/).
 */
export function sumSeries(text: string, name: string, labels: RegExp = /.*/): number {
  return parseMetrics(text)
    .find(name)
    .filter((s) => labels.test(labelText(s.labels)))
    .reduce((a, s) => a + s.value, 0);
}

function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
  );
  return pairs.length > 0 ? `{${pairs.join(',')}}` : '';
}
