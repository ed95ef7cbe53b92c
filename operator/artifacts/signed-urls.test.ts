// Table tests for signed artifact-server URLs: what verifyRequest accepts (the granted method on
// the granted key before the deadline) and what it refuses, with which status. It is pure, so
// the clock is a parameter and no server is needed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { signedPath, verifyRequest, type UrlGrant, type Verdict } from './signed-urls.ts';

const key = Buffer.alloc(32, 1);
const otherKey = Buffer.alloc(32, 2);
const now = 1_800_000_000;
const later = now + 300;

/** The URL the server would see for a signed path. */
const urlOf = (path: string) => new URL(path, 'http://artifact-server');
const sign = (grant: UrlGrant, signingKey = key) => urlOf(signedPath(signingKey, grant));

/** A signed URL with one query parameter replaced after signing. */
function tampered(grant: UrlGrant, name: string, value: string): URL {
  const url = sign(grant);
  url.searchParams.set(name, value);
  return url;
}

describe('signedPath + verifyRequest: accepted', () => {
  const cases: Array<[what: string, grant: UrlGrant, httpMethod: string]> = [
    ['GET of an object', { method: 'GET', key: 'team-a/runs/r1/out.bin', expiresAt: later }, 'GET'],
    // exists() reads with HEAD, so a read grant covers it.
    ['HEAD with a read grant', { method: 'GET', key: 'team-a/runs/r1/out.bin', expiresAt: later }, 'HEAD'],
    ['PUT of an object', { method: 'PUT', key: 'team-a/runs/r1/report.json', expiresAt: later }, 'PUT'],
    ['DELETE of an object', { method: 'DELETE', key: 'team-a/cache/x', expiresAt: later }, 'DELETE'],
    ['LIST of a prefix', { method: 'LIST', key: 'team-a/runs/', expiresAt: later }, 'GET'],
    ['LIST of everything', { method: 'LIST', key: '', expiresAt: later }, 'GET'],
    ['BLOB into a namespace', { method: 'BLOB', key: 'team-a', expiresAt: later }, 'POST'],
    ['an expiry one second away', { method: 'GET', key: 'a', expiresAt: now + 1 }, 'GET'],
    // Keys are percent-encoded per segment in the path and must come back unchanged.
    ['a key with spaces', { method: 'GET', key: 'runs/with space/a b.json', expiresAt: later }, 'GET'],
    ['a key with unicode', { method: 'PUT', key: 'modèles/ünïcødé/日本語.bin', expiresAt: later }, 'PUT'],
    ['a key with URL metacharacters', { method: 'GET', key: 'runs/#1%/a?b=c&d.json', expiresAt: later }, 'GET'],
    ['a list prefix with spaces and unicode', { method: 'LIST', key: 'runs/with space/ü', expiresAt: later }, 'GET'],
  ];
  for (const [what, grant, httpMethod] of cases) {
    it(what, () => {
      assert.deepEqual(verifyRequest(key, httpMethod, sign(grant), now), { ok: true, grant });
    });
  }

  it('keeps slashes in the path and encodes the rest', () => {
    const path = signedPath(key, { method: 'GET', key: 'runs/with space/ü', expiresAt: later });
    assert.match(path, /^\/v1\/objects\/runs\/with%20space\/%C3%BC\?/);
  });
});

describe('signedPath + verifyRequest: refused', () => {
  const grant: UrlGrant = { method: 'GET', key: 'team-a/runs/r1/out.bin', expiresAt: later };
  const cases: Array<[what: string, httpMethod: string, url: URL, status: number, reason: RegExp]> = [
    ['signed with another key', 'GET', sign(grant, otherKey), 403, /signature/],
    ['the expiry moved later', 'GET', tampered(grant, 'expires', String(later + 3600)), 403, /signature/],
    // Claiming a wider grant method must not make the signature fit it.
    ['the granted method changed to PUT', 'PUT', tampered(grant, 'method', 'PUT'), 403, /signature/],
    ['the granted method changed to DELETE', 'DELETE', tampered(grant, 'method', 'DELETE'), 403, /signature/],
    ['a read grant used to PUT', 'PUT', sign(grant), 405, /does not allow PUT/],
    ['a read grant used to DELETE', 'DELETE', sign(grant), 405, /does not allow DELETE/],
    ['a create grant used to GET', 'GET', sign({ ...grant, method: 'PUT' }), 405, /does not allow GET/],
    ['a list grant used to POST', 'POST', sign({ method: 'LIST', key: 'team-a/', expiresAt: later }), 405, /does not allow POST/],
    ['expired a minute ago', 'GET', sign({ ...grant, expiresAt: now - 60 }), 403, /expired/],
    ['expiring this very second', 'GET', sign({ ...grant, expiresAt: now }), 403, /expired/],
    ['the path changed to another key', 'GET', withPath(sign(grant), '/v1/objects/team-b/runs/r1/out.bin'), 403, /signature/],
    ['the list prefix widened', 'GET', tampered({ method: 'LIST', key: 'team-a/', expiresAt: later }, 'prefix', ''), 403, /signature/],
    ['a blob grant used for another namespace', 'POST', withPath(sign({ method: 'BLOB', key: 'team-a', expiresAt: later }), '/v1/blobs/team-b'), 403, /signature/],
    ['no query at all', 'GET', urlOf('/v1/objects/team-a/x'), 403, /not signed/],
    ['no signature', 'GET', without(sign(grant), 'signature'), 403, /not signed/],
    ['a non-integer expiry', 'GET', tampered(grant, 'expires', 'soon'), 403, /not signed/],
    ['an unknown endpoint', 'GET', withPath(sign(grant), '/v1/other/x'), 404, /no such endpoint/],
    // Malformed percent-encoding is the client's fault: 400, not an exception.
    ['a truncated percent-escape', 'GET', urlOf('/v1/objects/team-a/%E0%A4%A?method=GET&expires=1&signature=x'), 400, /not a valid key/],
    ['a lone percent sign', 'GET', urlOf('/v1/objects/team-a/100%?method=GET&expires=1&signature=x'), 400, /not a valid key/],
    ['invalid UTF-8', 'GET', urlOf('/v1/objects/%FF%FE'), 400, /not a valid key/],
    ['a malformed blob namespace', 'POST', urlOf('/v1/blobs/%C3'), 400, /not a valid key/],
    // Grant methods are looked up in a table: names every object has must not match an entry.
    ['method=constructor', 'GET', tampered(grant, 'method', 'constructor'), 405, /does not allow GET/],
    ['method=__proto__', 'GET', tampered(grant, 'method', '__proto__'), 405, /does not allow GET/],
    ['method=toString', 'GET', tampered(grant, 'method', 'toString'), 405, /does not allow GET/],
    ['an unknown method', 'GET', tampered(grant, 'method', 'READ'), 405, /does not allow GET/],
  ];
  for (const [what, httpMethod, url, status, reason] of cases) {
    it(what, () => {
      let verdict: Verdict | undefined;
      assert.doesNotThrow(() => { verdict = verifyRequest(key, httpMethod, url, now); });
      assert.equal(verdict?.ok, false, `${what}: accepted`);
      if (verdict?.ok === false) {
        assert.equal(verdict.status, status);
        assert.match(verdict.reason, reason);
      }
    });
  }

  it('gives reasons that name nothing the store holds', () => {
    for (const [, httpMethod, url] of cases) {
      const verdict = verifyRequest(key, httpMethod, url, now);
      assert.ok(!verdict.ok);
      assert.doesNotMatch(verdict.reason, /team-|runs\/|out\.bin/, verdict.reason);
    }
  });
});

function withPath(url: URL, pathname: string): URL {
  const changed = new URL(url);
  changed.pathname = pathname;
  return changed;
}

function without(url: URL, name: string): URL {
  const changed = new URL(url);
  changed.searchParams.delete(name);
  return changed;
}
