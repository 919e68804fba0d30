// Puts the host back after a real-node run that could not do it itself (the runner was SIGKILLed):
// `npx tsx harness/node/restore-host.ts <baseDir>`. The node harness's watchdog runs this.
import { restoreHost } from './host.js';

const baseDir = process.argv[2];
if (!baseDir) {
  process.stderr.write('usage: restore-host.ts <baseDir>\n');
  process.exit(2);
}
const problems = restoreHost(baseDir, (m) => process.stderr.write(`[node-host] ${m}\n`));
for (const p of problems) process.stderr.write(`[node-host] not restored: ${p}\n`);
process.exit(problems.length === 0 ? 0 : 1);
