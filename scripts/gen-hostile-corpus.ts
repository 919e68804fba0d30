// Writes the hostile-input corpus to test/data/hostile/: one raw workspace.json per file plus
// expectations.json naming, per case, the field its error must mention. Run: npx tsx scripts/gen-hostile-corpus.ts
// Files are bytes: the few that are not valid UTF-8 go into a ConfigMap's binaryData, the rest into data.
import { isUtf8 } from 'node:buffer';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(import.meta.dirname, '..', 'test', 'data', 'hostile');
const base = {
  workspace_id: 'hostile-ws',
  workspace_name: 'Hostile Workspace',
  users: [
    { user_id: 'u1', email: 'owner@example.com', role: 'owner' },
    { user_id: 'u2', email: 'dev@example.com', role: 'contributor' },
  ],
  data_bucket: 'hostile-ws-data',
  services: ['flyte'],
};
type Doc = Record<string, unknown>;
const cases: { name: string; raw: string | Buffer; field: string }[] = [];
const add = (name: string, field: string, doc: Doc | string | Buffer) =>
  cases.push({ name, field, raw: typeof doc === 'string' || Buffer.isBuffer(doc) ? doc : JSON.stringify(doc) });
const withField = (k: string, v: unknown): Doc => ({ ...base, [k]: v });
const without = (k: string): Doc => {
  const d: Doc = { ...base };
  delete d[k];
  return d;
};
const withUser = (u: unknown, i = 0): Doc => {
  const users: unknown[] = [...base.users];
  users[i] = u;
  return { ...base, users };
};

// Truncated and invalid JSON.
const full = JSON.stringify(base);
for (const cut of [1, 10, 30, 60, 90, full.length - 1])
  add(`truncated-at-${cut}`, 'workspace.json', full.slice(0, cut));
for (const [n, raw] of Object.entries({
  empty: '',
  whitespace: '   ',
  'single-quotes': "{'workspace_id': 'x'}",
  'trailing-comma': '{"workspace_id": "x",}',
  comment: '{"workspace_id": "x" /* c */}',
  nan: '{"workspace_id": NaN}',
  'bare-word': 'flyte',
  yaml: 'workspace_id: x\nusers: []',
  'bom-garbage': '\u0000\u0001{}',
  'unterminated-string': '{"workspace_id": "x',
}))
  add(`invalid-json-${n}`, 'workspace.json', raw);

// Wrong root types.
for (const [n, raw] of Object.entries({ array: '[]', string: '"ws"', number: '42', null: 'null', true: 'true' })) {
  add(`root-${n}`, '(root)', raw);
}

// Missing fields.
for (const k of ['workspace_id', 'workspace_name', 'users', 'data_bucket', 'services'])
  add(`missing-${k}`, k, without(k));

// Wrong types per field.
const wrong: [string, unknown][] = [
  ['number', 7],
  ['bool', true],
  ['object', { a: 1 }],
  ['array', ['x']],
  ['null', null],
];
for (const k of ['workspace_id', 'workspace_name', 'data_bucket']) {
  for (const [n, v] of wrong) add(`wrong-type-${k}-${n}`, k, withField(k, v));
}
for (const [n, v] of [
  ['string', 'alice'],
  ['number', 3],
  ['object', { u: 1 }],
  ['bool', false],
] as const) {
  add(`wrong-type-users-${n}`, 'users', withField('users', v));
  add(`wrong-type-services-${n}`, 'services', withField('services', v));
}
add('wrong-type-tier-number', 'tier', withField('tier', 3));
add('wrong-type-owner-email', 'owner_email', withField('owner_email', 12));

// Empty and huge arrays.
add('users-empty', 'users', withField('users', []));
add(
  'users-huge',
  'users',
  withField(
    'users',
    Array.from({ length: 600 }, (_, i) => ({ user_id: `u${i}`, email: `u${i}@example.com`, role: 'owner' })),
  ),
);
add(
  'services-huge',
  'services',
  withField(
    'services',
    Array.from({ length: 500 }, (_, i) => `svc${i}`),
  ),
);
add('empty-strings-id', 'workspace_id', withField('workspace_id', ''));
add('empty-strings-name', 'workspace_name', withField('workspace_name', '   '));

// User entries.
add('user-not-object', 'users[0]', withUser('alice'));
add('user-null', 'users[0]', withUser(null));
add('user-array', 'users[0]', withUser(['u1']));
add('user-missing-id', 'users[0].user_id', withUser({ email: 'owner@example.com', role: 'owner' }));
add('user-missing-email', 'users[0].email', withUser({ user_id: 'u1', role: 'owner' }));
add('user-missing-role', 'users[0].role', withUser({ user_id: 'u1', email: 'owner@example.com' }));
for (const role of ['admin', 'Owner', 'OWNER', 'root', '', 'cluster-admin', 'owner ', 'viewer']) {
  add(
    `user-role-${role.trim() || 'empty'}${role.endsWith(' ') ? '-space' : ''}`,
    'users[1].role',
    withUser({ user_id: 'u2', email: 'dev@example.com', role }, 1),
  );
}
add('user-role-number', 'users[1].role', withUser({ user_id: 'u2', email: 'dev@example.com', role: 1 }, 1));
for (const email of [
  'not-an-email',
  'a@',
  '@b.com',
  'a b@c.com',
  'a@b',
  '<script>@x.com',
  'a@b..com',
  `${'x'.repeat(250)}@e.com`,
]) {
  add(`user-email-${cases.length}`, 'users[1].email', withUser({ user_id: 'u2', email, role: 'contributor' }, 1));
}
for (const id of ['../etc', 'a/b', 'x y', '-lead', 'a;rm -rf', 'u'.repeat(200), '$(id)', 'ü-user']) {
  add(
    `user-id-${cases.length}`,
    'users[1].user_id',
    withUser({ user_id: id, email: 'dev@example.com', role: 'contributor' }, 1),
  );
}
add(
  'users-duplicate-id',
  'users[2].user_id',
  withField('users', [...base.users, { user_id: 'u1', email: 'other@example.com', role: 'owner' }]),
);
add(
  'users-duplicate-email',
  'users[2].email',
  withField('users', [...base.users, { user_id: 'u3', email: 'OWNER@example.com', role: 'owner' }]),
);
add('users-no-owner', 'users', withField('users', [base.users[1]]));
add(
  'users-only-contributors',
  'users',
  withField('users', [base.users[1], { user_id: 'u9', email: 'c9@example.com', role: 'contributor' }]),
);

// Workspace ids.
const badIds: Record<string, string> = {
  uppercase: 'Hostile-WS',
  dots: 'hostile.ws',
  slash: 'hostile/ws',
  'dot-dot': '..',
  'path-traversal': '../../etc/passwd',
  underscore: 'hostile_ws',
  space: 'hostile ws',
  'leading-dash': '-hostile',
  'trailing-dash': 'hostile-',
  unicode: 'höstile',
  emoji: 'ws-😀',
  'too-long-64': 'a'.repeat(64),
  'too-long-45': 'a'.repeat(45),
  'too-long-300': 'b'.repeat(300),
  'kube-system': 'kube-system',
  default: 'default',
  'kube-public': 'kube-public',
  'kube-node-lease': 'kube-node-lease',
  'kube-prefix': 'kube-anything',
  'flyte-system-ns': 'flyte',
  'controller-ns': 'flyte-workspace-controller',
  'platform-ns': 'workspace-platform',
  newline: 'ws\nx',
  tab: 'ws\tx',
  nul: 'ws\u0000x',
  'sql-ish': "ws'; drop table projects;--",
  'shell-ish': '$(rm -rf /)',
  url: 'http://evil',
};
for (const [n, id] of Object.entries(badIds)) {
  add(`id-${n}`, 'workspace_id', { ...base, workspace_id: id, data_bucket: 'hostile-ws-data' });
}

// Buckets.
const badBuckets: Record<string, string> = {
  'other-team': 'finance-data',
  arn: 'arn:aws:s3:::hostile-ws-data',
  'arn-wildcard': 'arn:aws:s3:::*',
  's3-url': 's3://hostile-ws-data',
  wildcard: '*',
  uppercase: 'Hostile-WS-Data',
  'too-short': 'ab',
  'too-long': `hostile-ws-data-${'x'.repeat(60)}`,
  'ip-address': '192.168.1.1',
  'double-dot': 'hostile..data',
  'prefix-match-only': 'hostile-ws-data-evil',
  'suffix-trick': 'evil-hostile-ws-data',
  path: 'hostile-ws-data/../finance-data',
  unicode: 'hostile-ws-dätä',
  space: 'hostile ws data',
};
for (const [n, b] of Object.entries(badBuckets)) add(`bucket-${n}`, 'data_bucket', withField('data_bucket', b));

// Services.
add('service-object-no-type', 'services[0].service_type', withField('services', [{ config: {} }]));
add('service-object-type-number', 'services[0].service_type', withField('services', [{ service_type: 5 }]));
add('service-config-array', 'services[0].config', withField('services', [{ service_type: 'flyte', config: [1] }]));
add('service-config-string', 'services[0].config', withField('services', [{ service_type: 'flyte', config: 'x' }]));
add('service-number', 'services[0]', withField('services', [42]));
add('service-null', 'services[0]', withField('services', [null]));
add('service-nested-array', 'services[0]', withField('services', [['flyte']]));
add('service-bad-name', 'services[0]', withField('services', ['fly te']));
add('service-control-char', 'services[0]', withField('services', ['fly\u0007te']));
add('service-path', 'services[0]', withField('services', ['../flyte']));

// Tiers and other optional fields.
for (const t of ['gold', '', 'DEFAULT', '__proto__', 'constructor', 'toString']) {
  add(`tier-${t || 'empty'}`, 'tier', withField('tier', t));
}
add('owner-email-invalid', 'owner_email', withField('owner_email', 'nobody'));

// Unicode and control characters.
add('name-control-char', 'workspace_name', withField('workspace_name', 'Hostile\u0007WS'));
add('name-newline', 'workspace_name', withField('workspace_name', 'Hostile\nWS'));
add('name-bidi-override', 'workspace_name', withField('workspace_name', 'Hostile \u202eSW'));
add('name-too-long', 'workspace_name', withField('workspace_name', 'N'.repeat(300)));
add('name-too-long-unicode', 'workspace_name', withField('workspace_name', '名'.repeat(300)));
add(
  'email-zero-width',
  'users[1].email',
  withUser({ user_id: 'u2', email: 'dev\u200b@example.com', role: 'contributor' }, 1),
);
add(
  'email-line-separator',
  'users[1].email',
  withUser({ user_id: 'u2', email: 'dev\u2028@example.com', role: 'contributor' }, 1),
);

// Prototype pollution.
add('proto-root', '__proto__', `{"__proto__":{"isAdmin":true},${full.slice(1)}`);
add(
  'proto-in-user',
  'users[0].__proto__',
  full.replace('{"user_id":"u1"', '{"__proto__":{"role":"owner"},"user_id":"u1"'),
);
add('constructor-root', 'constructor', `{"constructor":{"prototype":{"x":1}},${full.slice(1)}`);
add('prototype-key', 'prototype', `{"prototype":{"x":1},${full.slice(1)}`);
add(
  'proto-in-service-config',
  'services[0].config.__proto__',
  JSON.stringify({
    ...base,
    services: [{ service_type: 'flyte', config: JSON.parse('{"__proto__":{"x":1}}') }],
  }).replace('"config":{}', '"config":{"__proto__":{"x":1}}'),
);
add('deep-nesting', 'extra', JSON.stringify({ ...base, extra: JSON.parse(`${'{"a":'.repeat(40)}1${'}'.repeat(40)}`) }));

// Size.
add('oversized-document', 'workspace.json', JSON.stringify({ ...base, padding: 'x'.repeat(300 * 1024) }));

// Ambiguities: documents that JSON readers disagree on (cases added after the ones above keep their numbers).
// Duplicate keys, at any depth and also when equal only after unescaping or Unicode normalisation (NFKC).
const owners = JSON.stringify([{ user_id: 'u9', email: 'evil@example.com', role: 'owner' }]);
/** The base document with one more member at the end (`member` is raw JSON text). */
const plus = (member: string) => `${full.slice(0, -1)},${member}}`;
add('dup-key-users', 'users', plus(`"users":${owners}`));
add('dup-key-workspace_id', 'workspace_id', plus('"workspace_id":"other-ws"'));
add('dup-key-data_bucket', 'data_bucket', plus('"data_bucket":"finance-data"'));
add('dup-key-escaped', 'users', plus(`"use\\u0072s":${owners}`));
add('dup-key-all-escaped', 'users', plus(`"\\u0075\\u0073\\u0065\\u0072\\u0073":${owners}`));
add('dup-key-fullwidth', 'users', plus(`"\uff55\uff53\uff45\uff52\uff53":${owners}`));
add('dup-key-in-user', 'users[1].role', full.replace('"role":"contributor"', '"role":"contributor","role":"owner"'));
add(
  'dup-key-in-user-fullwidth',
  'users[1].role',
  full.replace('"role":"contributor"', '"role":"contributor","\uff52\uff4f\uff4c\uff45":"owner"'),
);
add(
  'dup-key-in-service-config',
  'services[0].config.max_parallelism',
  JSON.stringify(withField('services', [{ service_type: 'flyte', config: { max_parallelism: 1 } }])).replace(
    '"max_parallelism":1',
    '"max_parallelism":1,"max_parallelism":1000',
  ),
);
add(
  'dup-key-service-type',
  'services[0].service_type',
  JSON.stringify(withField('services', [{ service_type: 'sagemaker' }])).replace(
    '"service_type":"sagemaker"',
    '"service_type":"sagemaker","service_type":"flyte"',
  ),
);
add('dup-key-deep', 'extra.a.b.c.d', plus('"extra":{"a":{"b":{"c":{"d":1,"d":2}}}}'));
add('dup-key-nfc-nfd', 'extra', plus(`"extra":{"caf\u00e9":1,"cafe\u0301":2}`));
add('dup-key-nfd-nfc-raw', 'extra', plus(`"extra":{"cafe\u0301":1,"caf\u00e9":2}`));
add('lookalike-key-tier', 'tier', plus(`"\uff54\uff49\uff45\uff52":"gold"`));
add(
  'lookalike-key-email',
  'users[0].email',
  full.replace('"email":"owner@example.com"', '"\uff45mail":"owner@example.com"'),
);
add('service-kelvin-sign', 'services[1]', withField('services', ['flyte', 'sagema\u212aer']));

// Text that is not Unicode: invalid UTF-8 bytes (reach us only as binaryData), the replacement character
// the API server leaves where bytes were invalid, and lone surrogates.
const bytesWith = (marker: string, bad: number[]) => {
  const [before, after] = JSON.stringify(withField('workspace_name', `Hostile ${marker} WS`)).split(marker);
  return Buffer.concat([Buffer.from(before as string), Buffer.from(bad), Buffer.from(after as string)]);
};
add('utf8-byte-ff', 'workspace.json', bytesWith('<bad>', [0xff]));
add('utf8-latin1-e-acute', 'workspace.json', bytesWith('<bad>', [0xe9]));
add('utf8-overlong-slash', 'workspace.json', bytesWith('<bad>', [0xc0, 0xaf]));
add('utf8-overlong-3-byte', 'workspace.json', bytesWith('<bad>', [0xe0, 0x80, 0xaf]));
add('utf8-encoded-surrogate', 'workspace.json', bytesWith('<bad>', [0xed, 0xa0, 0x80]));
add('utf8-above-max-code-point', 'workspace.json', bytesWith('<bad>', [0xf4, 0x90, 0x80, 0x80]));
add('utf8-truncated-sequence', 'workspace.json', bytesWith('<bad>', [0xe2, 0x82]));
add('utf8-lone-continuation', 'workspace.json', bytesWith('<bad>', [0x80]));
add(
  'utf8-in-key',
  'workspace.json',
  Buffer.concat([Buffer.from(`${full.slice(0, -1)},"x`), Buffer.from([0xfe]), Buffer.from('":1}')]),
);
add('replacement-char-name', 'workspace_name', withField('workspace_name', 'Hostile \ufffd WS'));
add(
  'replacement-char-email',
  'users[1].email',
  withUser({ user_id: 'u2', email: 'dev\ufffd@example.com', role: 'contributor' }, 1),
);
add('replacement-char-in-key', '(root)', plus(`"users\ufffd":${owners}`));
add('escaped-lone-high-surrogate', 'workspace_name', full.replace('"Hostile Workspace"', '"x\\ud800"'));
add(
  'escaped-lone-low-surrogate',
  'users[1].email',
  full.replace('"email":"dev@example.com"', '"email":"dev\\udc00@example.com"'),
);
add('escaped-reversed-surrogates', 'tier', plus(`"tier":"\\udc00\\ud800"`));
add(
  'escaped-high-surrogate-then-text',
  'services[0]',
  full.replace('"services":["flyte"]', '"services":["\\ud83dflyte"]'),
);
add('escaped-lone-surrogate-in-key', 'extra', plus(`"extra":{"\\udfff":1}`));
add(
  'escaped-lone-surrogate-in-config',
  'services[0].config.label',
  full.replace('"services":["flyte"]', '"services":[{"service_type":"flyte","config":{"label":"\\ud800"}}]'),
);

// Numbers that do not read back exactly (only service config and unknown fields take numbers; any number
// anywhere is checked).
const withConfigNumber = (key: string, token: string) =>
  full.replace('"services":["flyte"]', `"services":[{"service_type":"flyte","config":{"${key}":${token}}}]`);
for (const [n, token] of Object.entries({
  'overflow-1e400': '1e400',
  'big-integer': '12345678901234567890',
  'beyond-safe-integer': '9007199254740993',
  'negative-zero': '-0',
  'negative-zero-fraction': '-0.0',
  'integer-with-fraction': '1.0',
  'integer-with-exponent': '1E2',
  'precision-loss': '0.1000000000000000000001',
  underflow: '1e-400',
  'many-digits': `1${'0'.repeat(400)}`,
})) {
  add(`number-${n}`, 'services[0].config.max_parallelism', withConfigNumber('max_parallelism', token));
}
add('number-in-array', 'extra_ids[1]', plus(`"extra_ids":[1,12345678901234567890]`));
add('number-as-workspace_id', 'workspace_id', full.replace('"workspace_id":"hostile-ws"', '"workspace_id":1e400'));

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const expectations: Record<string, string> = {};
cases.forEach((c, i) => {
  const file = `${String(i + 1).padStart(3, '0')}-${c.name.replace(/[^a-z0-9-]+/gi, '_').slice(0, 60)}.json`;
  writeFileSync(join(dir, file), c.raw);
  if (typeof c.raw === 'string' && !isUtf8(Buffer.from(c.raw))) throw new Error(`${c.name}: text cases must be UTF-8`);
  expectations[file] = c.field;
});
writeFileSync(join(dir, 'expectations.json'), `${JSON.stringify(expectations, null, 2)}\n`);
console.log(`wrote ${cases.length} cases to ${dir} (${readdirSync(dir).length - 1} files)`);
