// The hostile workspace.json corpus (test/data/hostile, written by scripts/gen-hostile-corpus.ts), loaded the
// way the controller would receive each file: valid UTF-8 as ConfigMap `data` text, anything else as the
// raw bytes of `binaryData` (where `kubectl create configmap --from-file` puts a file that is not UTF-8).
import { isUtf8 } from 'node:buffer';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface HostileCase {
  /** File name, e.g. `166-dup-key-users.json`. */
  name: string;
  /** The field the error must name (or a prefix of it). */
  field: string;
  /** Text for `data`, or bytes for `binaryData`. */
  document: string | Buffer;
}

const dir = join(import.meta.dirname, '..', 'data', 'hostile');

export function loadHostileCorpus(): HostileCase[] {
  const expectations = JSON.parse(readFileSync(join(dir, 'expectations.json'), 'utf8')) as Record<string, string>;
  return readdirSync(dir)
    .filter((f) => f !== 'expectations.json')
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(dir, name));
      if (expectations[name] === undefined) throw new Error(`${name} has no entry in expectations.json`);
      return { name, field: expectations[name], document: isUtf8(bytes) ? bytes.toString('utf8') : bytes };
    });
}

/** Whether an error on `fields` names `field` itself or something inside it. */
export function namesField(fields: string[], field: string): boolean {
  return fields.some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`));
}
