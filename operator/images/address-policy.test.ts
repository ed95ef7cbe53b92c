// Unit tables for the address policy: how addresses are classified, what is allowed with and
// without an administrator's listing, host lists, and which token realms a registry may use.
// The policy applied to real connections is tested in test/integration/image-hardening.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyAddress, HostList, isRealmAllowed, judgeAddress, judgeHostname, type AddressClass } from './address-policy.ts';

describe('classifyAddress', () => {
  const cases: Array<[address: string, expected: AddressClass]> = [
    // public
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['172.32.0.1', 'public'], // just past 172.16/12
    ['100.128.0.1', 'public'], // just past 100.64/10
    ['169.255.0.1', 'public'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001:82b::200e', 'public'],
    // cloud metadata, before the ranges they sit in
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['FD00:EC2:0:0:0:0:0:254', 'metadata'],
    ['::ffff:169.254.169.254', 'metadata'], // IPv4-mapped
    ['::ffff:a9fe:a9fe', 'metadata'], // the same, in hex
    ['64:ff9b::169.254.169.254', 'metadata'], // NAT64
    // link-local
    ['169.254.0.1', 'link-local'],
    ['169.254.255.255', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    // private
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['::ffff:10.1.2.3', 'private'],
    ['2002:0a01:0203::1', 'private'], // 6to4 of 10.1.2.3
    // loopback
    ['127.0.0.1', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    // reserved
    ['0.0.0.0', 'reserved'], // reaches the local host on Linux
    ['0.1.2.3', 'reserved'],
    ['224.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['::', 'reserved'],
    ['ff02::1', 'reserved'],
    ['::10.0.0.1', 'reserved'], // deprecated IPv4-compatible
  ];
  for (const [address, expected] of cases) {
    it(`${address} is ${expected}`, () => assert.equal(classifyAddress(address), expected));
  }

  it('throws on what is not an address', () => {
    assert.throws(() => classifyAddress('registry.example.com'), /not an IP address/);
  });
});

describe('judgeAddress and judgeHostname', () => {
  const cases: Array<[host: string, trusted: boolean, allowed: boolean | undefined]> = [
    ['8.8.8.8', false, true],
    ['10.1.2.3', false, false],
    ['10.1.2.3', true, true], // listed by an administrator
    ['127.0.0.1', false, false],
    ['127.0.0.1', true, true],
    ['::1', true, true],
    ['169.254.169.254', true, false], // never, listed or not
    ['fd00:ec2::254', true, false],
    ['fe80::1', true, false],
    ['169.254.10.10', true, false],
    ['0.0.0.0', true, false],
    ['metadata.google.internal', true, false],
    ['METADATA.google.internal.', false, false], // a trailing dot is the same name
    ['metadata.goog', false, false],
    ['[fe80::1]', false, false],
    ['registry.example.com', false, undefined], // a name: judged after its lookup
    ['localhost', false, undefined],
  ];
  for (const [host, trusted, allowed] of cases) {
    it(`${host}${trusted ? ' (listed)' : ''}: ${allowed === undefined ? 'needs a lookup' : allowed ? 'allowed' : 'refused'}`, () => {
      assert.equal(judgeHostname(host, trusted)?.allowed, allowed);
    });
  }

  it('says why in the verdict, for logs', () => {
    assert.deepEqual(judgeAddress('169.254.169.254', true), { allowed: false, cls: 'metadata', reason: '169.254.169.254 is a metadata address' });
  });
});

describe('HostList', () => {
  const list = new HostList(['registry.corp', 'Local.Example:5000', 'http://10.0.0.5:5001/', '[fd00::1]:443', ' ', '']);
  const cases: Array<[hostname: string, port: number | undefined, expected: boolean]> = [
    ['registry.corp', undefined, true],
    ['registry.corp', 443, true],
    ['registry.corp', 80, true],
    ['registry.corp', 22, false], // no port listed means the default ports only
    ['registry.corp.', 443, true],
    ['REGISTRY.corp', 443, true],
    ['other.corp', 443, false],
    ['local.example', 5000, true],
    ['local.example', 5001, false],
    ['local.example', undefined, false],
    ['10.0.0.5', 5001, true], // scheme and path ignored
    ['[fd00::1]', 443, true],
    ['fd00::1', 443, true],
    ['fd00::1', 8443, false],
  ];
  for (const [hostname, port, expected] of cases) {
    it(`${hostname}:${port ?? '(default)'} is ${expected ? '' : 'not '}listed`, () => assert.equal(list.matches(hostname, port), expected));
  }

  it('reads authorities as written in references', () => {
    assert.equal(list.hasAuthority('local.example:5000'), true);
    assert.equal(list.hasAuthority('registry.corp'), true);
    assert.equal(list.hasAuthority('registry.corp:5000'), false);
  });
});

describe('isRealmAllowed', () => {
  const allowed = new HostList(['auth.docker.io', 'gitlab.com', 'tokens.corp:8443']);
  const cases: Array<[realm: string, registry: string[], expected: boolean]> = [
    ['https://ghcr.io/token', ['ghcr.io'], true], // the registry's own host
    ['https://GHCR.io:8443/token', ['ghcr.io'], true], // its own host name, any port
    ['https://auth.docker.io/token', ['docker.io', 'registry-1.docker.io'], true], // listed
    ['https://gitlab.com/jwt/auth', ['registry.gitlab.com'], true],
    ['https://tokens.corp:8443/t', ['registry.corp'], true],
    ['https://tokens.corp/t', ['registry.corp'], false], // listed with another port
    ['http://169.254.169.254/latest/meta-data/', ['evil.example'], false],
    ['http://10.0.0.1:6379/', ['evil.example'], false],
    ['https://evil.example.attacker.net/token', ['evil.example'], false],
    ['https://127.0.0.1:9000/token', ['127.0.0.1:5000'].map((r) => new URL(`http://${r}`).hostname), true],
    ['https://[::1]:9000/token', ['[::1]'], true],
  ];
  for (const [realm, registry, expected] of cases) {
    it(`${realm} for ${registry.join('/')}: ${expected ? 'allowed' : 'refused'}`, () => {
      assert.equal(isRealmAllowed(new URL(realm), registry, allowed), expected);
    });
  }
});
