// CPU cost of reading workspace.json, which happens on every reconcile of every workspace: the strict reader
// (src/spec/json.ts) against JSON.parse, and the whole parseWorkspace, on a typical document, one with 500
// users, and one near the 256 KiB limit. No control plane. `npx tsx scripts/bench-json.ts [--ms 300] [--rounds 5]`
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/config/config.js';
import { parseStrictJson } from '../src/spec/json.js';
import { parseWorkspace, validateWorkspace } from '../src/spec/workspace.js';
import { medianOf } from './bench/trials.js';

const { values } = parseArgs({
  options: { ms: { type: 'string', default: '300' }, rounds: { type: 'string', default: '5' } },
});
const budgetMs = Math.max(50, Number(values.ms));
const rounds = Math.max(1, Number(values.rounds));
const cfg = defaultConfig();

const user = (i: number) => ({
  user_id: `u${i}`,
  email: `user.${i}@example.com`,
  role: i === 0 ? 'owner' : 'contributor',
});
const doc = (users: number, padding = 0) =>
  JSON.stringify({
    workspace_id: 'ml-research',
    workspace_name: 'ML Research — Zürich',
    users: Array.from({ length: users }, (_, i) => user(i)),
    data_bucket: 'ml-research-data',
    services: [{ service_type: 'flyte', config: { max_parallelism: 20, labels: { team: 'ml' } } }, 'sagemaker'],
    ...(padding > 0 ? { notes: Array.from({ length: padding }, (_, i) => ({ i, text: `note ${i}: "x" \\ y` })) } : {}),
  });
const documents = { 'typical (5 users)': doc(5), '500 users': doc(500), 'near the limit': doc(500, 3500) };

/** Microseconds per call of each function: `rounds` rounds of `budgetMs` each, alternating, median per function. */
function measure(fns: (() => unknown)[]): number[] {
  const samples: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    fns.forEach((fn, f) => {
      let calls = 0;
      const start = process.hrtime.bigint();
      const end = start + BigInt(budgetMs) * 1_000_000n;
      let now = start;
      while (now < end) {
        for (let k = 0; k < 16; k++) fn();
        calls += 16;
        now = process.hrtime.bigint();
      }
      samples[f]?.push(Number(now - start) / 1000 / calls);
    });
  }
  return samples.map(medianOf);
}

// "before" is what parseWorkspace did until the strict reader: JSON.parse, then validation of the value
// (which walks it for forbidden keys and depth, now the reader's job).
console.log(
  '| document | bytes | JSON.parse µs | strict reader µs | before: JSON.parse + validate µs | parseWorkspace µs |',
);
console.log('|---|---:|---:|---:|---:|---:|');
for (const [name, text] of Object.entries(documents)) {
  const [base, strict, before, after] = measure([
    () => JSON.parse(text),
    () => parseStrictJson(text, { maxDepth: 32 }),
    () => validateWorkspace(JSON.parse(text), cfg),
    () => parseWorkspace(text, cfg),
  ]) as [number, number, number, number];
  const bytes = Buffer.byteLength(text);
  console.log(
    `| ${name} | ${bytes} | ${base.toFixed(1)} | ${strict.toFixed(1)} | ${before.toFixed(1)} | ${after.toFixed(1)} |`,
  );
}
