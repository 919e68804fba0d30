import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { numberRefusal, parseStrictJson, type StrictJsonResult } from '../../src/spec/json.js';
import { firstInvalidUtf8, parseWorkspace, workspaceDocument } from '../../src/spec/workspace.js';

const parse = (text: string, maxDepth = 32): StrictJsonResult => parseStrictJson(text, { maxDepth });
const value = (text: string): unknown => {
  const r = parse(text);
  if (!r.ok) throw new Error(`refused ${text}: ${r.path}: ${r.message}`);
  return r.value;
};
const refusal = (text: string, maxDepth = 32): { path: string | undefined; message: string } => {
  const r = parse(text, maxDepth);
  if (r.ok) throw new Error(`accepted ${text}`);
  return { path: r.path, message: r.message };
};

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u0001',
  'é',
  'ß',
  '名',
  '\u2028',
  '😀',
  '\u{10ffff}',
];

/** A random JSON value without any ambiguity (distinct keys, numbers that read back exactly). */
function unambiguous(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 5 ? 4 : 6));
  const text = () =>
    Array.from({ length: Math.floor(next() * 8) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]).join('');
  switch (pick) {
    case 0:
      return text();
    case 1:
      return next() < 0.5 ? Math.floor((next() - 0.5) * 2 ** 40) : Number((next() * 1000 - 500).toPrecision(7));
    case 2:
      return [true, false, null][Math.floor(next() * 3)];
    case 3:
      return next() < 0.5 ? 0 : text().normalize('NFKC');
    case 4:
      return Array.from({ length: Math.floor(next() * 5) }, () => unambiguous(next, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const seen = new Set<string>();
      for (let k = Math.floor(next() * 5); k > 0; k--) {
        const key = text();
        if (seen.has(key.normalize('NFKC')) || key === '__proto__') continue;
        seen.add(key.normalize('NFKC'));
        o[key] = unambiguous(next, depth + 1);
      }
      return o;
    }
  }
}

/** JSON text of `v` with random whitespace and random (valid) escapes, as other writers produce. */
function writeLoosely(v: unknown, next: () => number): string {
  const ws = () => [' ', '\n', '\r\n', '\t', ''][Math.floor(next() * 5)] as string;
  if (typeof v === 'string') {
    let out = '"';
    for (const ch of v) {
      if (ch === '"' || ch === '\\' || ch < ' ') out += JSON.stringify(ch).slice(1, -1);
      else if (next() < 0.2) {
        for (let k = 0; k < ch.length; k++) out += `\\u${ch.charCodeAt(k).toString(16).padStart(4, '0')}`;
      } else if (ch === '/' && next() < 0.5) out += '\\/';
      else out += ch;
    }
    return `${out}"`;
  }
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => writeLoosely(x, next)).join(`${ws()},${ws()}`)}${ws()}]`;
  if (v !== null && typeof v === 'object') {
    const members = Object.entries(v).map(
      ([k, x]) => `${writeLoosely(k, next)}${ws()}:${ws()}${writeLoosely(x, next)}`,
    );
    return `{${ws()}${members.join(`,${ws()}`)}${ws()}}`;
  }
  return JSON.stringify(v);
}

describe('strict JSON reader: documents with one meaning read exactly as JSON.parse reads them', () => {
  it('reads escapes, nested containers, Unicode and literals', () => {
    expect(value('{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u2028"}')).toEqual({ a: '"\\/\b\f\n\r\tAé\u2028' });
    expect(value('"\\ud83d\\ude00 and raw 😀, 名前, \\uD83D\\uDE00"')).toBe('😀 and raw 😀, 名前, 😀');
    expect(value(' \r\n\t{ "a" : [ 1 , { "b" : [ ] , "c" : { } } , true , false , null ] } \n')).toEqual({
      a: [1, { b: [], c: {} }, true, false, null],
    });
    expect(value('[0, -1, 0.5, -2.5e-3, 1e-7, 9007199254740991, -9007199254740991, 123456.789]')).toEqual([
      0, -1, 0.5, -0.0025, 1e-7, 9007199254740991, -9007199254740991, 123456.789,
    ]);
    // The explicit replacement-character escape, a control character written as an escape.
    expect(value('["\\ufffd", "\\u0000"]')).toEqual(['\ufffd', '\u0000']);
    // Keys are compared exactly: case and distinct normal forms are different keys.
    expect(value('{"users":1,"Users":2,"é":3,"e":4}')).toEqual({ users: 1, Users: 2, é: 3, e: 4 });
  });

  it('keeps "__proto__" as an own property, as JSON.parse does, and pollutes nothing', () => {
    const v = value('{"__proto__":{"isAdmin":true},"a":{"__proto__":[1]}}') as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect((v as { isAdmin?: unknown }).isAdmin).toBeUndefined();
    expect(({} as { isAdmin?: unknown }).isAdmin).toBeUndefined();
    expect(JSON.stringify(v)).toBe(JSON.stringify(JSON.parse('{"__proto__":{"isAdmin":true},"a":{"__proto__":[1]}}')));
  });

  it('accepts nesting up to the limit', () => {
    expect(value(`${'['.repeat(32)}${']'.repeat(32)}`)).toHaveLength(1);
    expect(refusal(`${'['.repeat(33)}${']'.repeat(33)}`).message).toBe('is nested more than 32 levels deep');
  });

  it('agrees with JSON.parse on 2000 random unambiguous documents written with random whitespace and escapes', () => {
    const next = random(14);
    for (let n = 0; n < 2000; n++) {
      const text = writeLoosely(unambiguous(next, 0), next);
      expect(parse(text), text).toEqual({ ok: true, value: JSON.parse(text) });
    }
  });

  it('reads a large document within the size limit', () => {
    const doc = {
      workspace_id: 'big',
      users: Array.from({ length: 500 }, (_, i) => ({ user_id: `u${i}`, email: `u${i}@example.com`, role: 'owner' })),
      notes: Array.from({ length: 2000 }, (_, i) => ({ i, text: `note ${i} é 名 😀 "quoted" \\ end`, f: i / 7 })),
    };
    const text = JSON.stringify(doc, null, 1);
    expect(text.length).toBeGreaterThan(200_000);
    expect(Buffer.byteLength(text)).toBeLessThan(defaultConfig().limits.maxDocumentBytes);
    expect(value(text)).toEqual(doc);
  });
});

describe('strict JSON reader: ambiguities are refused, naming the path', () => {
  it('refuses a key that appears twice in one object, at any depth, also when written differently', () => {
    expect(refusal('{"users":[1],"users":[2]}')).toEqual({
      path: 'users',
      message: 'duplicate key: appears more than once in the same object',
    });
    expect(refusal('{"users":[{"email":"a","role":"x","email":"b"}]}').path).toBe('users[0].email');
    expect(refusal('{"a":{"b":[0,{"c":{"d":1,"d":1}}]}}').path).toBe('a.b[1].c.d');
    expect(refusal('{"users":1,"use\\u0072s":2}').path).toBe('users');
    expect(refusal('{"\\u0075sers":1,"users":2}').path).toBe('users');
    expect(refusal('{"odd key":1,"odd\\u0020key":2}').path).toBe('["odd key"]');
  });

  it('refuses keys equal after Unicode normalisation (NFC/NFD, compatibility forms)', () => {
    const nfcThenNfd = refusal('{"x":{"caf\u00e9":1,"cafe\u0301":2}}');
    expect(nfcThenNfd.path).toBe('x["café"]');
    expect(nfcThenNfd.message).toBe(
      'duplicate key: "caf\\u00e9" and "cafe\\u0301" are the same key after Unicode normalisation (NFKC)',
    );
    expect(refusal('{"x":{"cafe\u0301":1,"caf\\u00e9":2}}').path).toBe('x["café"]');
    expect(refusal('{"users":1,"\uff55\uff53\uff45\uff52\uff53":2}').path).toBe('users');
    expect(refusal('{"\uff55\uff53\uff45\uff52\uff53":1,"users":2}').path).toBe('users');
  });

  it('refuses lone surrogates, escaped or raw, in values and keys, and a raw U+FFFD', () => {
    expect(refusal('{"a":["\\ud800"]}')).toEqual({
      path: 'a[0]',
      message: 'the string contains an escaped lone surrogate (\\uD800), which is not Unicode text',
    });
    expect(refusal('{"a":"\\udc00"}').path).toBe('a');
    expect(refusal('{"a":"\\udc00\\ud800"}').path).toBe('a');
    expect(refusal('{"a":"\\ud83dx"}').path).toBe('a');
    expect(refusal('{"a":"\\ud83d\\u0041"}').path).toBe('a');
    expect(refusal('{"a":"\\ud83d\ude00"}').path).toBe('a'); // escaped half, raw half
    expect(refusal('{"a":"x\ud800"}').message).toBe(
      'the string contains a lone surrogate (U+D800), which is not Unicode text',
    );
    expect(refusal('{"a":"\udfff"}').path).toBe('a');
    expect(refusal('{"a":{"k\\ud800":1}}')).toEqual({
      path: 'a',
      message: 'a key contains an escaped lone surrogate (\\uD800), which is not Unicode text',
    });
    expect(refusal('{"a":"dev\ufffd@example.com"}')).toMatchObject({ path: 'a', message: /U\+FFFD/ });
    expect(refusal('{"a\ufffd":1}')).toMatchObject({ path: '', message: /^a key contains U\+FFFD/ });
  });

  it('refuses numbers that do not read back exactly', () => {
    const cases: [string, RegExp][] = [
      ['1e400', /out of range/],
      ['-1e400', /out of range/],
      ['12345678901234567890', /beyond ±9007199254740991/],
      ['9007199254740992', /beyond/],
      ['-9007199254740993', /beyond/],
      [`1${'0'.repeat(400)}`, /beyond/],
      ['-0', /^-0 is refused/],
      ['-0.0', /denotes 0/],
      ['0.0', /denotes 0/],
      ['0e10', /denotes 0/],
      ['1.0', /denotes the integer 1: write it as 1/],
      ['1E2', /denotes the integer 100/],
      ['2.5e1', /denotes the integer 25/],
      ['1.5e300', /denotes an integer beyond/],
      ['0.1000000000000000000001', /reads back as 0\.1\b/],
      ['12345678901234567890.5', /not exactly representable/],
      ['1e-400', /underflows/],
    ];
    for (const [token, message] of cases) {
      expect(refusal(`{"config":{"n":[${token}]}}`), token).toMatchObject({ path: 'config.n[0]', message });
    }
    expect(numberRefusal('0.30000000000000004', false)).toBeUndefined();
    expect(numberRefusal('5e-324', false)).toBeUndefined();
    expect(numberRefusal('1.7976931348623157e308', false)).toMatch(/integer/);
  });

  it('reports syntax errors with their position and no path', () => {
    const cases: [string, string][] = [
      ['', 'unexpected end of input where a value should start'],
      ['{"a":1,}', 'unexpected character "}" where a key should start at line 1 column 8'],
      ['{\n  "a": tru\n}', 'unexpected character "t" in a literal (true, false or null expected) at line 2 column 8'],
      ['{"a":"x', 'unexpected end of input inside a string'],
      [
        '"a\u0001"',
        'unexpected character U+0001 inside a string (control characters must be escaped) at line 1 column 3',
      ],
      ['"\\x"', 'unexpected character "x" after "\\" (not a JSON escape) at line 1 column 3'],
      ['"\\u12G4"', 'unexpected character "G" in a \\u escape (four hex digits expected) at line 1 column 6'],
      ['\ufeff{}', 'unexpected character U+FEFF where a value should start at line 1 column 1'],
      ['01', 'unexpected character "1" after the JSON value at line 1 column 2'],
      ['1.', 'unexpected end of input in a number (digits expected after ".")'],
      ['-', 'unexpected end of input in a number'],
      ['{} {}', 'unexpected character "{" after the JSON value at line 1 column 4'],
      ["{'a':1}", `unexpected character "'" where a key should start at line 1 column 2`],
      ['[1 2]', 'unexpected character "2" where "," or "]" should follow a value at line 1 column 4'],
      ['NaN', 'unexpected character "N" where a value should start at line 1 column 1'],
    ];
    for (const [text, message] of cases) expect(parse(text), text).toEqual({ ok: false, path: undefined, message });
  });

  it('stops at the depth limit before the stack does, whatever the nesting', () => {
    expect(refusal('['.repeat(200_000))).toEqual({
      path: '[0]'.repeat(32),
      message: 'is nested more than 32 levels deep',
    });
    expect(refusal(`{"a":${'{"b":'.repeat(5)}1${'}'.repeat(6)}`, 4).path).toBe('a.b.b.b');
  });
});

describe('workspace.json: bytes, binaryData and look-alike names', () => {
  const cfg = defaultConfig();
  const good = JSON.stringify({
    workspace_id: 'ml',
    workspace_name: 'ML é',
    users: [{ user_id: 'u1', email: 'a@example.com', role: 'owner' }],
    data_bucket: 'ml-data',
    services: ['flyte'],
  });

  it('reads the document from data, or as bytes from binaryData', () => {
    expect(workspaceDocument({ data: { 'workspace.json': good } }, 'workspace.json')).toBe(good);
    const fromBinary = workspaceDocument(
      { binaryData: { 'workspace.json': Buffer.from(good).toString('base64') } },
      'workspace.json',
    );
    expect(Buffer.isBuffer(fromBinary)).toBe(true);
    const a = parseWorkspace(good, cfg);
    const b = parseWorkspace(fromBinary, cfg);
    expect(a.ok && b.ok && a.specHash === b.specHash).toBe(true);
    expect(workspaceDocument({ data: {} }, 'workspace.json')).toBeUndefined();
  });

  it('refuses bytes that are not UTF-8, naming the offset of the first bad byte', () => {
    const at = good.indexOf('é');
    const latin1 = Buffer.from(good, 'latin1'); // é as the single byte 0xE9
    expect(parseWorkspace(latin1, cfg)).toEqual({
      ok: false,
      errors: [{ field: 'workspace.json', message: `is not valid UTF-8: invalid byte sequence at byte ${at}` }],
    });
  });

  it('finds the first invalid UTF-8 sequence exactly where a fatal decoder fails', () => {
    const next = random(8);
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const pool = [
      0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xa0, 0xed, 0x9f, 0xef, 0xf0, 0x90, 0xf4, 0x8f, 0xf5, 0xff,
    ];
    let invalid = 0;
    for (let n = 0; n < 3000; n++) {
      const bytes = Uint8Array.from(
        { length: 1 + Math.floor(next() * 6) },
        () => pool[Math.floor(next() * pool.length)] as number,
      );
      const offset = firstInvalidUtf8(bytes);
      const decodes = (b: Uint8Array) => {
        try {
          decoder.decode(b);
          return true;
        } catch {
          return false;
        }
      };
      expect(offset === -1, `${[...bytes]}`).toBe(decodes(bytes));
      if (offset >= 0) {
        invalid++;
        expect(decodes(bytes.subarray(0, offset)), `${[...bytes]} at ${offset}`).toBe(true);
      }
    }
    expect(invalid).toBeGreaterThan(1000);
  });

  it('refuses a key that only normalises to one the schema reads, and non-ASCII service names', () => {
    const tier = parseWorkspace(`${good.slice(0, -1)},"\uff54ier":"gold"}`, cfg);
    expect(tier).toEqual({
      ok: false,
      errors: [
        {
          field: 'tier',
          message: 'key "\\uff54ier" reads as "tier" after Unicode normalisation (NFKC); write "tier"',
        },
      ],
    });
    const kelvin = parseWorkspace(good.replace('["flyte"]', '["flyte","sagema\u212aer"]'), cfg);
    expect(kelvin.ok).toBe(false);
    if (!kelvin.ok) expect(kelvin.errors.map((e) => e.field)).toEqual(['services[1]']);
    const spaced = parseWorkspace(good.replace('["flyte"]', '[" FLYTE "]'), cfg);
    expect(spaced.ok && spaced.spec.services).toEqual(['flyte']);
  });

  it('keeps forbidden keys and the depth limit of the document, with their paths', () => {
    const proto = parseWorkspace(good.replace('{"user_id"', '{"__proto__":{},"user_id"'), cfg);
    expect(proto.ok || proto.errors).toEqual([
      { field: 'users[0].__proto__', message: 'forbidden key (prototype pollution attempt)' },
    ]);
    const deep = parseWorkspace(`${good.slice(0, -1)},"x":${'['.repeat(40)}${']'.repeat(40)}}`, cfg);
    expect(deep.ok || deep.errors[0]?.field).toBe(`x${'[0]'.repeat(31)}`); // the root object is level 1
  });
});
