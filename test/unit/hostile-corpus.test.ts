import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { formatFieldErrors, parseWorkspace } from '../../src/spec/workspace.js';

const dir = join(import.meta.dirname, '..', 'data', 'hostile');
const expectations = JSON.parse(readFileSync(join(dir, 'expectations.json'), 'utf8')) as Record<string, string>;
const files = readdirSync(dir).filter((f) => f !== 'expectations.json');
const cfg = defaultConfig();

describe('hostile workspace.json corpus (validation layer)', () => {
  it('has at least 150 cases, each with an expectation', () => {
    expect(files.length).toBeGreaterThanOrEqual(150);
    expect(Object.keys(expectations).sort()).toEqual([...files].sort());
  });

  it.each(files)('%s is rejected with an error naming its field', (file) => {
    const raw = readFileSync(join(dir, file), 'utf8');
    const result = parseWorkspace(raw, cfg);
    expect(result.ok, `accepted: ${raw.slice(0, 200)}`).toBe(false);
    if (result.ok) return;
    const field = expectations[file] as string;
    const fields = result.errors.map((e) => e.field);
    expect(
      fields.some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`)),
      `expected an error on "${field}", got: ${formatFieldErrors(result.errors)}`,
    ).toBe(true);
    // Messages are bounded: a hostile document cannot flood status or events.
    expect(formatFieldErrors(result.errors).length).toBeLessThan(4096);
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });
});
