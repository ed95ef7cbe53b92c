// Unit tables for the pure parts of the registry client: pull-Secret credentials lookup and
// WWW-Authenticate parsing. The HTTP flows are covered against a real registry in
// test/integration/image-resolution.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { credentialsFromDockerConfig, parseWwwAuthenticate } from './registry-client.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('credentialsFromDockerConfig', () => {
  const config = JSON.stringify({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') }, // ':' inside the password
      'registry.example.com': { username: 'alice', password: 's3cret', auth: b64('ignored:ignored') },
      'registry.example.com:5000': { auth: b64('bob:port-pass') },
      'http://127.0.0.1:5000': { auth: b64('local:pw'), email: 'x@example.com' },
      '*.corp.example': { auth: b64('wild:card') },
      'eu.corp.example': { auth: b64('exact:beats-wildcard') },
      'scoped.example/team': { auth: b64('path:scoped') },
      'acr.example.io': { identitytoken: 'refresh-me', auth: b64('00000000-0000-0000-0000-000000000000:') },
      'empty.example': { auth: '' },
      'notes.example': 'not an object',
    },
  });
  const lookup = credentialsFromDockerConfig(config);
  const cases: Array<[registry: string, expected: ReturnType<typeof lookup>]> = [
    ['docker.io', { username: 'hubuser', password: 'hub:pass' }],
    ['registry.example.com', { username: 'alice', password: 's3cret' }],
    ['Registry.Example.com', { username: 'alice', password: 's3cret' }],
    ['registry.example.com:5000', { username: 'bob', password: 'port-pass' }],
    ['registry.example.com:5001', undefined],
    ['127.0.0.1:5000', { username: 'local', password: 'pw' }],
    ['127.0.0.1', undefined],
    ['us.corp.example', { username: 'wild', password: 'card' }],
    ['eu.corp.example', { username: 'exact', password: 'beats-wildcard' }],
    ['a.b.corp.example', undefined], // `*` matches one label only
    ['corp.example', undefined],
    ['scoped.example', { username: 'path', password: 'scoped' }],
    // An empty password decodes to "", which is not a password: only the identity token is kept.
    ['acr.example.io', { username: '00000000-0000-0000-0000-000000000000', token: 'refresh-me' }],
    ['empty.example', undefined],
    ['notes.example', undefined],
    ['unknown.example', undefined],
  ];
  for (const [registry, expected] of cases) {
    it(`${registry} → ${expected === undefined ? 'no credentials' : JSON.stringify(expected)}`, () => {
      assert.deepEqual(lookup(registry), expected);
    });
  }

  it('reads the older .dockercfg shape (hosts at the top level)', () => {
    const legacy = credentialsFromDockerConfig(JSON.stringify({ 'quay.io': { auth: b64('q:w') } }));
    assert.deepEqual(legacy('quay.io'), { username: 'q', password: 'w' });
  });

  it('prefers a host-wide key over a path-scoped one for the same host', () => {
    const both = credentialsFromDockerConfig(JSON.stringify({ auths: {
      'reg.example/team-a': { auth: b64('a:1') },
      'reg.example': { auth: b64('host:2') },
    } }));
    assert.deepEqual(both('reg.example'), { username: 'host', password: '2' });
  });

  for (const [name, text] of [['invalid JSON', '{'], ['an array', '[]'], ['auths not an object', '{"auths": 3}']] as const) {
    it(`throws on ${name}`, () => assert.throws(() => credentialsFromDockerConfig(text), /not a docker config/));
  }
});

describe('parseWwwAuthenticate', () => {
  const cases: Array<[header: string, expected: ReturnType<typeof parseWwwAuthenticate>]> = [
    ['Basic realm="ferry-test"', [{ scheme: 'basic', params: { realm: 'ferry-test' } }]],
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
      [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } }],
    ],
    [
      'Bearer realm="http://127.0.0.1:1/token", service="svc", scope="repository:a/b:pull,push", error="insufficient_scope"',
      [{ scheme: 'bearer', params: { realm: 'http://127.0.0.1:1/token', service: 'svc', scope: 'repository:a/b:pull,push', error: 'insufficient_scope' } }],
    ],
    ['BEARER Realm=https://t.example/token, Service=svc', [{ scheme: 'bearer', params: { realm: 'https://t.example/token', service: 'svc' } }]],
    ['Basic realm="a \\"quoted\\" realm"', [{ scheme: 'basic', params: { realm: 'a "quoted" realm' } }]],
    // fetch joins repeated headers with ", ".
    ['Bearer realm="https://t.example/token", Basic realm="r"', [
      { scheme: 'bearer', params: { realm: 'https://t.example/token' } },
      { scheme: 'basic', params: { realm: 'r' } },
    ]],
    ['Negotiate', [{ scheme: 'negotiate', params: {} }]],
    ['', []],
  ];
  for (const [header, expected] of cases) {
    it(`parses ${JSON.stringify(header)}`, () => assert.deepEqual(parseWwwAuthenticate(header), expected));
  }
});
