import { describe, expect, it } from 'vitest';
import { check } from '../../scripts/check-layers.js';

const files = (entries: Record<string, string>) => new Map(Object.entries(entries));
const messages = (entries: Record<string, string>) =>
  check(files(entries)).map((v) => `${v.file}:${v.line}: ${v.message}`);

describe('check-layers', () => {
  it('accepts imports that go down or stay in a layer', () => {
    expect(
      messages({
        'src/kinds/step.ts': 'export type X = 1;\n',
        'src/spec/workspace.ts': "import type { X } from '../kinds/step.js';\n",
        'src/reconcile/types.ts': "import { y } from '../spec/workspace.js';\nimport { z } from 'pino';\n",
        'harness/kube.ts': "import '../src/reconcile/types.js';\n",
        'test/unit/a.test.ts': "import { it } from 'vitest';\nimport '../../harness/kube.js';\n",
      }),
    ).toEqual([]);
  });

  it.each([
    ['import', "import { a } from '../reconcile/types.js';"],
    ['import type', "import type { A } from '../reconcile/types.js';"],
    ['export from', "export { a } from '../reconcile/types.js';"],
    ['export type from', "export type { A } from '../reconcile/types.js';"],
    ['dynamic import', "const m = await import('../reconcile/types.js');"],
  ])('reports an upward %s with its line', (_, statement) => {
    expect(
      messages({
        'src/reconcile/types.ts': 'export type A = 1;\nexport const a = 1;\n',
        'src/adapters/iam.ts': `// header\n${statement}\n`,
      }),
    ).toEqual(['src/adapters/iam.ts:2: layer adapters imports src/reconcile/types.ts of the higher layer reconcile']);
  });

  it('reports scripts importing tests, and the test runner outside test/', () => {
    expect(
      messages({
        'test/support/kube.ts': 'export const k = 1;\n',
        'scripts/bench.ts': "import { k } from '../test/support/kube.js';\n",
        'harness/double.ts': "import { inject } from 'vitest';\n",
      }),
    ).toEqual([
      'scripts/bench.ts:1: layer scripts imports test/support/kube.ts of the higher layer tests',
      "harness/double.ts:1: imports the test runner 'vitest' outside test/",
    ]);
  });

  it('reports a file cycle inside one folder and a folder cycle inside one layer', () => {
    expect(
      messages({
        'src/reconcile/status.ts': "import type { A } from './types.js';\n",
        'src/reconcile/types.ts': "import type { S } from './status.js';\n",
        'src/watch/sources.ts': "import '../queue/workqueue.js';\n",
        'src/queue/workqueue.ts': "import '../watch/sources.js';\n",
      }),
    ).toEqual([
      'src/queue/workqueue.ts:1: file cycle: src/queue/workqueue.ts -> src/watch/sources.ts -> src/queue/workqueue.ts',
      'src/reconcile/status.ts:1: file cycle: src/reconcile/status.ts -> src/reconcile/types.ts -> src/reconcile/status.ts',
      'src/queue/workqueue.ts:1: folder cycle: src/queue -> src/watch -> src/queue',
    ]);
  });

  it('reports an import of a file that does not exist', () => {
    expect(messages({ 'src/cli.ts': "import './controller/gone.js';\n" })).toEqual([
      "src/cli.ts:1: imports './controller/gone.js', which is no scanned source file",
    ]);
  });
});
