import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { formatFieldErrors, parseWorkspace, validateWorkspace } from '../../src/spec/workspace.js';
import { loadHostileCorpus, namesField } from '../support/hostile-corpus.js';

const cases = loadHostileCorpus();
const cfg = defaultConfig();

describe('hostile workspace.json corpus (validation layer)', () => {
  it('has at least 200 cases, each with an expectation, some of them bytes that are not UTF-8', () => {
    expect(cases.length).toBeGreaterThanOrEqual(200);
    expect(cases.length).toBe(readdirSync(join(import.meta.dirname, '..', 'data', 'hostile')).length - 1);
    expect(cases.filter((c) => Buffer.isBuffer(c.document)).length).toBeGreaterThanOrEqual(8);
  });

  it.each(cases)('$name is rejected with an error naming its field', ({ document, field }) => {
    const result = parseWorkspace(document, cfg);
    expect(result.ok, `accepted: ${document.slice(0, 200).toString()}`).toBe(false);
    if (result.ok) return;
    expect(
      namesField(
        result.errors.map((e) => e.field),
        field,
      ),
      `expected an error on "${field}", got: ${formatFieldErrors(result.errors)}`,
    ).toBe(true);
    // Messages are bounded: a hostile document cannot flood status or events.
    expect(formatFieldErrors(result.errors).length).toBeLessThan(4096);
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  // The ambiguities (cases from 166 on): most are otherwise valid workspaces, which JSON.parse plus field
  // validation accepted with one of the meanings.
  const ambiguities = cases.filter((c) =>
    /-(dup-key|lookalike|service-kelvin|utf8|replacement|escaped|number)-/.test(c.name),
  );
  it('the ambiguity cases are mostly documents JSON.parse reads as a valid workspace', () => {
    expect(ambiguities.length).toBeGreaterThanOrEqual(45);
    const acceptedByJsonParse = ambiguities.filter((c) => {
      try {
        return validateWorkspace(JSON.parse(c.document.toString('utf8')), cfg).ok;
      } catch {
        return false;
      }
    });
    expect(acceptedByJsonParse.length).toBeGreaterThanOrEqual(35);
  });

  it.each(ambiguities)('$name is refused as a whole, with one error', ({ document }) => {
    const result = parseWorkspace(document, cfg);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toHaveLength(1);
  });
});
