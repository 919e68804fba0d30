// A strict JSON reader: RFC 8259 text with exactly one meaning for every reader. JSON.parse keeps the last
// copy of a duplicated key and quietly accepts lone surrogates and numbers it has to round; other parsers
// keep the first copy, refuse, or keep more digits, so the same document can mean two different things
// (the JSON smuggling class of attacks). This reader refuses all of those instead, naming the path:
//   * a key that appears twice in one object, also when the two are only equal after unescaping or after
//     Unicode normalisation (NFKC, which also folds NFC/NFD and compatibility forms such as full-width);
//   * a lone surrogate, escaped (`"\ud800"`) or raw, and a raw U+FFFD (see REPLACEMENT below);
//   * a number that does not read back exactly: out of double range, -0, an integer beyond ±(2^53-1), an
//     integer written with a fraction or exponent (`1.0` is a float to some parsers, an int to others), or
//     a fraction that a double rounds.
// One pass, linear in the text, recursion bounded by maxDepth.

export interface StrictJsonOptions {
  /** Containers nested deeper than this (the root object or array is level 1) are refused. */
  maxDepth: number;
  /**
   * Extra rule for object keys: `normalized` is the key after NFKC (the key itself when ASCII). Returns
   * why the key is refused, or undefined.
   */
  checkKey?: (key: string, normalized: string) => string | undefined;
}

/** `path` is undefined for a syntax error (no value to point at), '' for the root value. */
export type StrictJsonResult = { ok: true; value: unknown } | { ok: false; path: string | undefined; message: string };

const MAX_SAFE_DIGITS = 15; // every integer of at most 15 digits is a safe integer

class JsonRefusal {
  constructor(
    readonly path: string | undefined,
    readonly message: string,
  ) {}
}

export function parseStrictJson(text: string, options: StrictJsonOptions): StrictJsonResult {
  try {
    const reader = new Reader(text, options);
    return { ok: true, value: reader.document() };
  } catch (err) {
    if (err instanceof JsonRefusal) return { ok: false, path: err.path, message: err.message };
    throw err;
  }
}

/** `a.b`, `a[0]`, and `a["odd key"]` for keys that are not plain names; long keys are cut. */
export function childPath(path: string, key: string): string {
  if (PLAIN_KEY.test(key)) return path ? `${path}.${key}` : key;
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return `${path}[${JSON.stringify(shown)}]`;
}

const PLAIN_KEY = /^[A-Za-z_$][\w$-]{0,63}$/;

class Reader {
  private i = 0;
  /** Whether the string read last was all ASCII (its own NFKC form: no normalisation needed). */
  private lastAscii = true;
  /** Keys and indexes from the root to the value being read; made into a path only for an error. */
  private readonly trail: (string | number)[] = [];

  constructor(
    private readonly s: string,
    private readonly o: StrictJsonOptions,
  ) {}

  document(): unknown {
    const v = this.value(0);
    this.skipWhitespace();
    if (this.i < this.s.length) this.unexpected('after the JSON value');
    return v;
  }

  private value(depth: number): unknown {
    this.skipWhitespace();
    const c = this.s.charCodeAt(this.i);
    if (c === 0x7b) return this.object(depth + 1);
    if (c === 0x5b) return this.array(depth + 1);
    if (c === 0x22) return this.string(false);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (c === 0x74) return this.literal('true', true);
    if (c === 0x66) return this.literal('false', false);
    if (c === 0x6e) return this.literal('null', null);
    return this.unexpected('where a value should start');
  }

  private object(depth: number): Record<string, unknown> {
    if (depth > this.o.maxDepth) this.refuse(`is nested more than ${this.o.maxDepth} levels deep`);
    this.i++;
    const out: Record<string, unknown> = {};
    // NFKC forms of the non-ASCII keys seen so far (ASCII keys are their own form and found in `out`).
    let normalizedKeys: Map<string, string> | undefined;
    this.skipWhitespace();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.s.charCodeAt(this.i) !== 0x22) this.unexpected('where a key should start');
      const key = this.string(true);
      const normalized = this.lastAscii ? key : key.normalize('NFKC');
      this.trail.push(normalized);
      if (Object.hasOwn(out, normalized) || normalizedKeys?.has(normalized)) {
        const first = normalizedKeys?.get(normalized) ?? normalized;
        this.refuse(
          first === key
            ? 'duplicate key: appears more than once in the same object'
            : `duplicate key: ${quote(first)} and ${quote(key)} are the same key after Unicode normalisation (NFKC)`,
        );
      }
      const refused = this.o.checkKey?.(key, normalized);
      if (refused !== undefined) this.refuse(refused);
      this.trail[this.trail.length - 1] = key;
      if (normalized !== key) {
        normalizedKeys ??= new Map();
        normalizedKeys.set(normalized, key);
      }
      this.skipWhitespace();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.unexpected('where ":" should follow a key');
      this.i++;
      const v = this.value(depth);
      this.trail.pop();
      // Like JSON.parse: "__proto__" becomes an own property, never the prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value: v, enumerable: true, writable: true });
      else out[key] = v;
      this.skipWhitespace();
      const c = this.s.charCodeAt(this.i);
      this.i++;
      if (c === 0x7d) return out;
      if (c !== 0x2c) {
        this.i--;
        this.unexpected('where "," or "}" should follow a value');
      }
    }
  }

  private array(depth: number): unknown[] {
    if (depth > this.o.maxDepth) this.refuse(`is nested more than ${this.o.maxDepth} levels deep`);
    this.i++;
    const out: unknown[] = [];
    this.skipWhitespace();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.trail.push(out.length);
      out.push(this.value(depth));
      this.trail.pop();
      this.skipWhitespace();
      const c = this.s.charCodeAt(this.i);
      this.i++;
      if (c === 0x5d) return out;
      if (c !== 0x2c) {
        this.i--;
        this.unexpected('where "," or "]" should follow a value');
      }
    }
  }

  /** Reads a string at the opening quote. A refused key is reported on its object. */
  private string(isKey: boolean): string {
    const s = this.s;
    const what = isKey ? 'a key' : 'the string';
    let i = this.i + 1;
    let start = i;
    let out = '';
    let ascii = true;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        this.lastAscii = ascii;
        return out + s.slice(start, i);
      }
      if (!(c >= 0x80)) {
        // ASCII, or NaN past the end of the text.
        if (c === 0x5c) {
          out += s.slice(start, i);
          this.i = i;
          const unescaped = this.escape(what);
          if (unescaped.charCodeAt(0) >= 0x80) ascii = false;
          out += unescaped;
          i = this.i;
          start = i;
          continue;
        }
        if (!(c >= 0x20)) {
          this.i = i;
          this.unexpected(i < s.length ? 'inside a string (control characters must be escaped)' : 'inside a string');
        }
        i++;
        continue;
      }
      ascii = false;
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = s.charCodeAt(i + 1);
        if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
          this.refuse(`${what} contains a lone surrogate (U+${hex(c)}), which is not Unicode text`);
        }
        i += 2;
        continue;
      }
      if (c === REPLACEMENT) this.refuse(`${what} ${REPLACEMENT_MESSAGE}`);
      i++;
    }
  }

  /** Reads one escape at the backslash; surrogate escapes must come as a complete pair. */
  private escape(what: string): string {
    const c = this.s.charCodeAt(this.i + 1);
    this.i += 2;
    switch (c) {
      case 0x22:
        return '"';
      case 0x5c:
        return '\\';
      case 0x2f:
        return '/';
      case 0x62:
        return '\b';
      case 0x66:
        return '\f';
      case 0x6e:
        return '\n';
      case 0x72:
        return '\r';
      case 0x74:
        return '\t';
      case 0x75: {
        const unit = this.hex4();
        if (unit < 0xd800 || unit > 0xdfff) return String.fromCharCode(unit);
        if (unit <= 0xdbff && this.s.charCodeAt(this.i) === 0x5c && this.s.charCodeAt(this.i + 1) === 0x75) {
          const save = this.i;
          this.i += 2;
          const low = this.hex4();
          if (low >= 0xdc00 && low <= 0xdfff) return String.fromCharCode(unit, low);
          this.i = save;
        }
        return this.refuse(`${what} contains an escaped lone surrogate (\\u${hex(unit)}), which is not Unicode text`);
      }
      default:
        this.i -= 1;
        return this.unexpected('after "\\" (not a JSON escape)');
    }
  }

  private hex4(): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.s.charCodeAt(this.i);
      const d =
        c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) this.unexpected('in a \\u escape (four hex digits expected)');
      v = v * 16 + d;
      this.i++;
    }
    return v;
  }

  private number(): number {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === 0x2d) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) i++;
    else if (first >= 0x31 && first <= 0x39) i = digitsEnd(s, i);
    else {
      this.i = i;
      this.unexpected('in a number');
    }
    let integer = true;
    if (s.charCodeAt(i) === 0x2e) {
      integer = false;
      const end = digitsEnd(s, i + 1);
      if (end === i + 1) {
        this.i = end;
        this.unexpected('in a number (digits expected after ".")');
      }
      i = end;
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      const end = digitsEnd(s, i);
      if (end === i) {
        this.i = end;
        this.unexpected('in a number (digits expected in the exponent)');
      }
      i = end;
    }
    this.i = i;
    const token = s.slice(start, i);
    const refused = numberRefusal(token, integer);
    if (refused !== undefined) this.refuse(refused);
    return Number(token);
  }

  private literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) this.unexpected('in a literal (true, false or null expected)');
    this.i += word.length;
    return v;
  }

  private skipWhitespace(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    this.i = i;
  }

  private refuse(message: string): never {
    let path = '';
    for (const step of this.trail) path = typeof step === 'number' ? `${path}[${step}]` : childPath(path, step);
    throw new JsonRefusal(path, message);
  }

  private unexpected(where: string): never {
    const s = this.s;
    if (this.i >= s.length) throw new JsonRefusal(undefined, `unexpected end of input ${where}`);
    let line = 1;
    let lineStart = 0;
    for (let k = s.indexOf('\n'); k !== -1 && k < this.i; k = s.indexOf('\n', k + 1)) {
      line++;
      lineStart = k + 1;
    }
    const ch = s.codePointAt(this.i) as number;
    const shown = ch >= 0x21 && ch <= 0x7e ? `"${String.fromCharCode(ch)}"` : `U+${hex(ch)}`;
    throw new JsonRefusal(
      undefined,
      `unexpected character ${shown} ${where} at line ${line} column ${this.i - lineStart + 1}`,
    );
  }
}

/**
 * A raw U+FFFD is what a decoder leaves where text was not valid: kube-apiserver stores the invalid bytes and
 * the `\ud800` escapes of a JSON request body as U+FFFD, so the writer (and any copy of its file) meant
 * something other than what we read. The escape `\ufffd` is explicit and allowed.
 */
const REPLACEMENT = 0xfffd;
const REPLACEMENT_MESSAGE =
  'contains U+FFFD, the replacement character a decoder leaves for bytes that were not valid UTF-8; other readers may see the original bytes (write \\ufffd if it is really meant)';

/** JSON-quoted with everything outside printable ASCII escaped, so look-alike keys can be told apart. */
export function quote(key: string): string {
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return JSON.stringify(shown).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function digitsEnd(s: string, i: number): number {
  let k = i;
  for (let c = s.charCodeAt(k); c >= 0x30 && c <= 0x39; c = s.charCodeAt(++k));
  return k;
}

function hex(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, '0');
}

/** Why a number token does not read back exactly as itself in every parser, or undefined. */
export function numberRefusal(token: string, integer: boolean): string | undefined {
  const shown = token.length > 40 ? `${token.slice(0, 40)}…` : token;
  if (integer) {
    if (token === '-0') return '-0 is refused: parsers disagree on its sign; write 0';
    const digits = token.charCodeAt(0) === 0x2d ? token.length - 1 : token.length;
    if (digits <= MAX_SAFE_DIGITS || Number.isSafeInteger(Number(token))) return undefined;
    return `${shown} is beyond ±${Number.MAX_SAFE_INTEGER}, the integers every JSON parser reads exactly; write it as a string`;
  }
  const v = Number(token);
  if (!Number.isFinite(v)) return `${shown} is out of range for a double; write it as a string`;
  if (v === 0) {
    return /[1-9]/.test(token.split(/[eE]/)[0] as string)
      ? `${shown} underflows to 0 in a double; write it as a string`
      : `${shown} denotes 0: write 0 (without fraction, exponent or sign), parsers disagree on its type and sign`;
  }
  const readBack = String(v);
  if (decimalValue(token) !== decimalValue(readBack)) {
    return `${shown} is not exactly representable as a double (reads back as ${readBack}); write it as a string`;
  }
  if (Number.isInteger(v)) {
    return Number.isSafeInteger(v)
      ? `${shown} denotes the integer ${readBack}: write it as ${readBack}, parsers disagree on whether it is an integer`
      : `${shown} denotes an integer beyond ±${Number.MAX_SAFE_INTEGER}, the integers every JSON parser reads exactly; write it as a string`;
  }
  return undefined;
}

/** Canonical `[-]digits e exponent` of a decimal number text, so that equal values give equal strings. */
function decimalValue(text: string): string {
  const negative = text.charCodeAt(0) === 0x2d;
  const body = negative ? text.slice(1) : text;
  const e = body.search(/[eE]/);
  const mantissa = e === -1 ? body : body.slice(0, e);
  let exponent = e === -1 ? 0 : Number(body.slice(e + 1));
  const dot = mantissa.indexOf('.');
  let digits = dot === -1 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
  if (dot !== -1) exponent -= mantissa.length - dot - 1;
  digits = digits.replace(/^0+/, '');
  const trimmed = digits.replace(/0+$/, '');
  exponent += digits.length - trimmed.length;
  return `${negative ? '-' : ''}${trimmed || '0'}e${trimmed ? exponent : 0}`;
}
