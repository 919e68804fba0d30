// The layer rule, run by `npm test`: every relative import (static, dynamic, `import type`, `export … from`)
// must point at the importer's own layer or one below it, no two files and no two folders may import each
// other (directly or round a loop), and only the tests may load the test runner. docs/design.md explains
// the layers. Exit code 1 and one line per violation when the rule is broken.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '..');

/** Bottom first. A path belongs to the first layer with a matching prefix. */
export const LAYERS: { name: string; paths: string[] }[] = [
  { name: 'gen', paths: ['src/gen/'] },
  { name: 'kinds', paths: ['src/kinds/', 'src/config/', 'src/log.ts', 'src/metrics/', 'src/ratelimit/'] },
  { name: 'kube', paths: ['src/kube/'] },
  { name: 'spec', paths: ['src/spec/'] },
  { name: 'desired', paths: ['src/desired/'] },
  { name: 'adapters', paths: ['src/adapters/'] },
  { name: 'reconcile', paths: ['src/reconcile/'] },
  { name: 'runtime', paths: ['src/watch/', 'src/queue/', 'src/leader/', 'src/server/', 'src/shutdown.ts'] },
  { name: 'controller', paths: ['src/controller/'] },
  { name: 'cli', paths: ['src/cli.ts', 'src/cli/'] },
  { name: 'harness', paths: ['harness/'] },
  { name: 'scripts', paths: ['scripts/'] },
  { name: 'tests', paths: ['test/', 'vitest.config.ts'] },
];
const SCANNED = ['src', 'harness', 'scripts', 'test', 'vitest.config.ts'];
/** Packages only the tests may load: the benchmark and `npm run local` must not pull in the test runner. */
const TEST_ONLY_PACKAGES = /^(vitest|@vitest\/)/;

export interface Violation {
  file: string;
  line: number;
  message: string;
}

function layerOf(file: string): number {
  const i = LAYERS.findIndex((l) => l.paths.some((p) => file === p || file.startsWith(p)));
  if (i < 0) throw new Error(`${file}: in no layer; add its folder to LAYERS in scripts/check-layers.ts`);
  return i;
}

/** The folder that counts for folder cycles: `src/<x>` for product code, the top folder elsewhere. */
function folderOf(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return '.';
  if (parts[0] === 'src' || parts[0] === 'test') return parts.length > 2 ? `${parts[0]}/${parts[1]}` : file;
  return parts[0] as string;
}

function sourceFiles(path: string): string[] {
  const abs = join(ROOT, path);
  if (statSync(abs).isFile()) return path.endsWith('.ts') ? [path] : [];
  return readdirSync(abs, { withFileTypes: true }).flatMap((e) =>
    e.name === 'node_modules' || e.name === 'data' ? [] : sourceFiles(`${path}/${e.name}`),
  );
}

interface Edge {
  from: string;
  to: string;
  line: number;
}

/** Repo-relative .ts file an import specifier names, or undefined for a package. */
function resolveSpecifier(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const target = relative(ROOT, resolve(ROOT, dirname(from), spec));
  return target.replace(/\.js$/, '.ts');
}

export function check(files: Map<string, string>): Violation[] {
  const violations: Violation[] = [];
  const edges: Edge[] = [];
  for (const [file, text] of files) {
    const info = ts.preProcessFile(text, true, true);
    for (const ref of info.importedFiles) {
      const line = text.slice(0, ref.pos).split('\n').length;
      if (TEST_ONLY_PACKAGES.test(ref.fileName) && LAYERS[layerOf(file)]?.name !== 'tests') {
        violations.push({ file, line, message: `imports the test runner '${ref.fileName}' outside test/` });
        continue;
      }
      const to = resolveSpecifier(file, ref.fileName);
      if (!to) continue;
      const target = files.has(to) ? to : files.has(to.replace(/\.ts$/, '.d.ts')) ? to.replace(/\.ts$/, '.d.ts') : to;
      if (!files.has(target)) {
        violations.push({ file, line, message: `imports '${ref.fileName}', which is no scanned source file` });
        continue;
      }
      edges.push({ from: file, to: target, line });
      const [mine, theirs] = [layerOf(file), layerOf(target)];
      if (theirs > mine) {
        violations.push({
          file,
          line,
          message: `layer ${LAYERS[mine]?.name} imports ${target} of the higher layer ${LAYERS[theirs]?.name}`,
        });
      }
    }
  }
  for (const cycle of cycles(edges, (f) => f)) {
    violations.push({ ...cycle.at, message: `file cycle: ${cycle.nodes.join(' -> ')}${cycle.more}` });
  }
  for (const cycle of cycles(edges, folderOf)) {
    violations.push({ ...cycle.at, message: `folder cycle: ${cycle.nodes.join(' -> ')}${cycle.more}` });
  }
  return violations;
}

/** One loop per strongly connected component of the graph `edges` induces on `key`, as a readable path. */
function cycles(
  edges: Edge[],
  key: (file: string) => string,
): { nodes: string[]; more: string; at: Omit<Violation, 'message'> }[] {
  const next = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const [a, b] = [key(e.from), key(e.to)];
    if (a === b) continue;
    if (!next.has(a)) next.set(a, new Map());
    if (!next.get(a)?.has(b)) next.get(a)?.set(b, e);
  }
  // Tarjan's algorithm, iterative over a small graph.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component);
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return components.map((component) => {
    const members = new Set(component);
    const start = [...members].sort()[0] as string;
    // Walk inside the component back to the start: a concrete loop to show.
    const path = [start];
    const seen = new Set([start]);
    let at = start;
    for (;;) {
      const options = [...(next.get(at)?.keys() ?? [])].filter((n) => members.has(n));
      const home = options.find((n) => n === start);
      const step = home && path.length > 1 ? home : (options.find((n) => !seen.has(n)) ?? home ?? options[0]);
      if (!step) break;
      path.push(step);
      if (step === start || seen.has(step)) break;
      seen.add(step);
      at = step;
    }
    const first = next.get(path[0] as string)?.get(path[1] as string) as Edge;
    const others = component.filter((n) => !path.includes(n)).sort();
    const more = others.length > 0 ? ` (same knot: ${others.join(', ')})` : '';
    return { nodes: path, more, at: { file: first.from, line: first.line } };
  });
}

function main(): number {
  const files = new Map<string, string>();
  for (const p of SCANNED) for (const f of sourceFiles(p)) files.set(f, readFileSync(join(ROOT, f), 'utf8'));
  const violations = check(files);
  for (const v of violations) process.stderr.write(`${v.file}:${v.line}: ${v.message}\n`);
  if (violations.length > 0) {
    process.stderr.write(
      `check-layers: ${violations.length} violation(s). Layers, bottom first: ${LAYERS.map((l) => l.name).join(' < ')}\n`,
    );
    return 1;
  }
  process.stderr.write(`check-layers: ${files.size} files, imports go one way\n`);
  return 0;
}

if (import.meta.main ?? process.argv[1] === import.meta.filename) process.exitCode = main();
