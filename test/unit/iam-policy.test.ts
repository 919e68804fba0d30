import { describe, expect, it } from 'vitest';
import {
  canonicalPolicy,
  decodePolicyText,
  normalizePolicy,
  PolicyParseError,
  parsePolicy,
  policiesEqual,
} from '../../src/desired/iam-policy.js';

const base = {
  Version: '2012-10-17',
  Statement: [
    {
      Sid: 'Objects',
      Effect: 'Allow',
      Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      Resource: 'arn:aws:s3:::ws1-data/*',
    },
    { Sid: 'List', Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::ws1-data' },
  ],
};

const issuer = 'oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE';
const trust = {
  Version: '2012-10-17',
  Statement: [
    {
      Effect: 'Allow',
      Principal: { Federated: `arn:aws:iam::123456789012:oidc-provider/${issuer}` },
      Action: 'sts:AssumeRoleWithWebIdentity',
      Condition: {
        StringEquals: {
          [`${issuer}:sub`]: ['system:serviceaccount:a-development:runner', 'system:serviceaccount:a-staging:runner'],
          [`${issuer}:aud`]: 'sts.amazonaws.com',
        },
      },
    },
  ],
};

describe('parsePolicy / decodePolicyText', () => {
  it('accepts plain JSON text, URL-encoded JSON (IAM GetRole/GetRolePolicy) and objects', () => {
    const text = JSON.stringify(base);
    expect(parsePolicy(text)).toEqual(base);
    expect(parsePolicy(encodeURIComponent(text))).toEqual(base);
    expect(parsePolicy(base)).toBe(base);
    expect(decodePolicyText(`  ${text}\n`)).toBe(text);
  });

  it('decodes what IAM actually returns (RFC 3986: / and * kept or encoded)', () => {
    const fromIam =
      '%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Ab/%2A%22%7D%5D%7D';
    expect(parsePolicy(fromIam)).toEqual({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*' }],
    });
  });

  it('keeps a literal "+" and "%" inside a plain JSON document', () => {
    const doc = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'x:y', Resource: 'a+b%20c' }] };
    expect(parsePolicy(JSON.stringify(doc))).toEqual(doc);
  });

  it('rejects garbage with a PolicyParseError', () => {
    expect(() => parsePolicy('{not json')).toThrow(PolicyParseError);
    expect(() => parsePolicy('%E0%A4%A')).toThrow(PolicyParseError);
    expect(() => normalizePolicy('[]')).toThrow(PolicyParseError);
    expect(() => normalizePolicy({ Version: '2012-10-17' })).toThrow(/no Statement/);
    expect(() => normalizePolicy({ Statement: [{ Effect: 'Allow', Action: [{}] }] })).toThrow(PolicyParseError);
  });
});

describe('policiesEqual: equal documents', () => {
  it('ignores statement order and key order', () => {
    const reordered = {
      Statement: [
        { Resource: 'arn:aws:s3:::ws1-data', Action: 's3:ListBucket', Effect: 'Allow', Sid: 'List' },
        base.Statement[0],
      ],
      Version: '2012-10-17',
    };
    expect(policiesEqual(base, reordered)).toBe(true);
  });

  it('ignores action and resource order, duplicates and the case of action names', () => {
    const other = structuredClone(base);
    (other.Statement[0] as { Action: string[] }).Action = [
      'S3:DeleteObject',
      's3:getobject',
      's3:PutObject',
      's3:GetObject',
    ];
    (other.Statement[1] as { Resource: string | string[] }).Resource = [
      'arn:aws:s3:::ws1-data',
      'arn:aws:s3:::ws1-data',
    ];
    expect(policiesEqual(base, other)).toBe(true);
  });

  it('treats a single value and a one-element array alike (Statement, Action, Resource, Principal)', () => {
    const single = {
      Version: '2012-10-17',
      Statement: { Effect: 'Allow', Principal: { Service: 'pods.eks.amazonaws.com' }, Action: 'sts:AssumeRole' },
    };
    const arrays = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: ['pods.eks.amazonaws.com'] }, Action: ['sts:AssumeRole'] }],
    };
    expect(policiesEqual(single, arrays)).toBe(true);
  });

  it('compares a URL-encoded live document with a desired object', () => {
    expect(policiesEqual(encodeURIComponent(JSON.stringify(trust)), trust)).toBe(true);
    expect(policiesEqual(JSON.stringify(trust), encodeURIComponent(JSON.stringify(trust)))).toBe(true);
  });

  it('ignores condition operator order, key order, key case and value order', () => {
    const other = {
      Version: '2012-10-17',
      Statement: [
        {
          Condition: {
            StringEquals: {
              [`${issuer}:AUD`]: ['sts.amazonaws.com'],
              [`${issuer}:sub`]: [
                'system:serviceaccount:a-staging:runner',
                'system:serviceaccount:a-development:runner',
              ],
            },
          },
          Action: ['sts:assumerolewithwebidentity'],
          Principal: { Federated: [`arn:aws:iam::123456789012:oidc-provider/${issuer}`] },
          Effect: 'Allow',
        },
      ],
    };
    expect(policiesEqual(trust, other)).toBe(true);
  });

  it('treats booleans and numbers in conditions like their string forms', () => {
    const a = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { Bool: { 'aws:SecureTransport': false }, NumericLessThan: { 's3:max-keys': 10 } },
        },
      ],
    };
    const b = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { NumericLessThan: { 's3:max-keys': '10' }, Bool: { 'aws:SecureTransport': 'false' } },
        },
      ],
    };
    expect(policiesEqual(a, b)).toBe(true);
  });

  it('knows the equivalent Principal forms', () => {
    const star = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: 's3:GetObject' }] };
    const awsStar = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: 's3:GetObject' }],
    };
    expect(policiesEqual(star, awsStar)).toBe(true);
    const account = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { AWS: '123456789012' }, Action: 'sts:AssumeRole' }],
    };
    const root = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Principal: { AWS: ['arn:aws:iam::123456789012:root'] }, Action: 'sts:AssumeRole' },
      ],
    };
    expect(policiesEqual(account, root)).toBe(true);
    const cn = {
      ...root,
      Statement: [{ ...root.Statement[0], Principal: { AWS: 'arn:aws-cn:iam::123456789012:root' } }],
    };
    expect(policiesEqual(account, cn, { partition: 'aws-cn' })).toBe(true);
  });

  it('drops duplicate statements and treats a missing Version as IAM does (2008-10-17)', () => {
    const dup = { ...base, Statement: [...base.Statement, base.Statement[0]] };
    expect(policiesEqual(base, dup)).toBe(true);
    const noVersion = { Statement: base.Statement };
    expect(policiesEqual(noVersion, { ...base, Version: '2008-10-17' })).toBe(true);
  });

  it('gives a stable canonical text independent of formatting', () => {
    const pretty = JSON.stringify(base, null, 2);
    expect(canonicalPolicy(pretty)).toBe(canonicalPolicy(JSON.stringify(base)));
    expect(canonicalPolicy(base)).toBe(canonicalPolicy(encodeURIComponent(pretty)));
  });
});

describe('policiesEqual: different documents', () => {
  it('sees an added statement', () => {
    const more = { ...base, Statement: [...base.Statement, { Effect: 'Allow', Action: 's3:*', Resource: '*' }] };
    expect(policiesEqual(base, more)).toBe(false);
  });

  it('sees a changed resource (resource ARNs are case-sensitive)', () => {
    const other = structuredClone(base);
    (other.Statement[1] as { Resource: string }).Resource = 'arn:aws:s3:::WS1-data';
    expect(policiesEqual(base, other)).toBe(false);
  });

  it('sees an added or removed action, Effect and Sid changes', () => {
    const added = structuredClone(base);
    (added.Statement[0] as { Action: string[] }).Action.push('s3:GetObjectAcl');
    expect(policiesEqual(base, added)).toBe(false);
    const deny = structuredClone(base);
    (deny.Statement[0] as { Effect: string }).Effect = 'Deny';
    expect(policiesEqual(base, deny)).toBe(false);
    const sid = structuredClone(base);
    (sid.Statement[0] as { Sid: string }).Sid = 'Renamed';
    expect(policiesEqual(base, sid)).toBe(false);
  });

  it('sees a different version', () => {
    expect(policiesEqual(base, { ...base, Version: '2008-10-17' })).toBe(false);
  });

  it('sees condition changes: operator, value, extra subject, missing key', () => {
    const change = (f: (c: Record<string, Record<string, unknown>>) => void) => {
      const t = structuredClone(trust);
      f(t.Statement[0]?.Condition as Record<string, Record<string, unknown>>);
      return t;
    };
    expect(
      policiesEqual(
        trust,
        change((c) => {
          c.StringLike = c.StringEquals as Record<string, unknown>;
          delete c.StringEquals;
        }),
      ),
    ).toBe(false);
    expect(
      policiesEqual(
        trust,
        change((c) => {
          (c.StringEquals as Record<string, unknown>)[`${issuer}:sub`] = 'system:serviceaccount:*:*';
        }),
      ),
    ).toBe(false);
    expect(
      policiesEqual(
        trust,
        change((c) => {
          ((c.StringEquals as Record<string, unknown>)[`${issuer}:sub`] as string[]).push('system:serviceaccount:x:y');
        }),
      ),
    ).toBe(false);
    expect(
      policiesEqual(
        trust,
        change((c) => {
          delete (c.StringEquals as Record<string, unknown>)[`${issuer}:aud`];
        }),
      ),
    ).toBe(false);
    // Condition values are case-sensitive for StringEquals.
    expect(
      policiesEqual(
        trust,
        change((c) => {
          (c.StringEquals as Record<string, unknown>)[`${issuer}:aud`] = 'STS.amazonaws.com';
        }),
      ),
    ).toBe(false);
  });

  it('keeps two spellings of one condition key apart instead of merging them', () => {
    const twoKeys = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 'a:b', Condition: { StringEquals: { 'aws:Foo': 'x', 'aws:foo': 'y' } } }],
    };
    const merged = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 'a:b', Condition: { StringEquals: { 'aws:foo': ['x', 'y'] } } }],
    };
    expect(policiesEqual(twoKeys, merged)).toBe(false);
  });

  it('sees a different principal and Principal vs NotPrincipal', () => {
    const a = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: 'pods.eks.amazonaws.com' }, Action: 'sts:AssumeRole' }],
    };
    const b = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
    };
    const c = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', NotPrincipal: { Service: 'pods.eks.amazonaws.com' }, Action: 'sts:AssumeRole' }],
    };
    expect(policiesEqual(a, b)).toBe(false);
    expect(policiesEqual(a, c)).toBe(false);
  });

  it('treats Action vs NotAction and Resource vs NotResource as different', () => {
    const a = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] };
    const b = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', NotAction: 's3:GetObject', Resource: '*' }] };
    const c = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', NotResource: '*' }] };
    expect(policiesEqual(a, b)).toBe(false);
    expect(policiesEqual(a, c)).toBe(false);
  });

  it('an unparseable document equals nothing (so it gets rewritten), without throwing', () => {
    expect(policiesEqual('{not json', base)).toBe(false);
    expect(policiesEqual(base, '')).toBe(false);
  });
});
