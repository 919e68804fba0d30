// Writes the hostile-input corpus to test/data/hostile/: one raw workspace.json per file plus
// expectations.json naming, per case, the field its error must mention. Run: npx tsx scripts/gen-hostile-corpus.ts
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
const cases: { name: string; raw: string; field: string }[] = [];
const add = (name: string, field: string, doc: Doc | string) =>
  cases.push({ name, field, raw: typeof doc === 'string' ? doc : JSON.stringify(doc) });
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

rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const expectations: Record<string, string> = {};
cases.forEach((c, i) => {
  const file = `${String(i + 1).padStart(3, '0')}-${c.name.replace(/[^a-z0-9-]+/gi, '_').slice(0, 60)}.json`;
  writeFileSync(join(dir, file), c.raw);
  expectations[file] = c.field;
});
writeFileSync(join(dir, 'expectations.json'), `${JSON.stringify(expectations, null, 2)}\n`);
console.log(`wrote ${cases.length} cases to ${dir} (${readdirSync(dir).length - 1} files)`);
