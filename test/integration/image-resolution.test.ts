// Tag → digest resolution against a real registry (Debian docker-registry) holding images that
// buildah built and pushed: plain, behind htpasswd Basic auth and behind the Docker token flow;
// plus the failure classes (not found, credentials, registry down or failing) the operator acts on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, sign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { credentialsFromDockerConfig, RegistryImageResolver } from '../../operator/images/registry-client.ts';
import { ImageResolutionError, type RegistryCredentials } from '../../operator/images/resolver.ts';
import type { Clock } from '../../operator/runtime/clock.ts';
import { freePort } from '../harness/ports.ts';
import { buildAndPushImage, startRegistry, type TestRegistry } from '../harness/registry.ts';

const log = (line: string): void => { process.stderr.write(`[registry] ${line}\n`); };
// The first run on a fresh machine may apt-get install docker-registry, buildah, apache2-utils.
const setupTimeout = { timeout: 300_000 };

/** Asserts that `promise` rejects with an ImageResolutionError of the given class and wording. */
async function rejectsWith(promise: Promise<unknown>, reference: string, transient: boolean, wording: RegExp): Promise<ImageResolutionError> {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected ${reference} to fail`), (err: unknown) => { caught = err; });
  assert.ok(caught instanceof ImageResolutionError, `not an ImageResolutionError: ${String(caught)}`);
  assert.equal(caught.reference, reference);
  assert.ok(caught.message.includes(reference), `message does not name ${reference}: ${caught.message}`);
  assert.match(caught.message, wording);
  assert.equal(caught.transient, transient, `transient should be ${transient}: ${caught.message}`);
  return caught;
}

function manualClock(start = Date.parse('2030-01-01T00:00:00Z')): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => new Date(now), advance: (ms) => { now += ms; } };
}

describe('a registry without auth', () => {
  let registry: TestRegistry | undefined;
  let host = '';
  let resolver: RegistryImageResolver;

  before(async () => {
    registry = await startRegistry({ log });
    host = registry.host;
    resolver = new RegistryImageResolver({ insecureRegistries: [host], cacheTtlMs: 0 });
  }, setupTimeout);
  after(() => registry?.stop());

  let firstDigest = '';

  it('resolves a pushed tag to the digest buildah reported, and pins the reference', async () => {
    firstDigest = await buildAndPushImage(host, 'ferry/test-step', '1.0', 'first content\n', { log });
    const resolved = await resolver.resolve(`${host}/ferry/test-step:1.0`);
    assert.deepEqual(resolved, {
      reference: `${host}/ferry/test-step:1.0`,
      digest: firstDigest,
      pinned: `${host}/ferry/test-step@${firstDigest}`,
    });
  });

  it('follows a re-pushed tag once the cache TTL is over; a digest reference needs no network', async () => {
    assert.ok(firstDigest, 'needs the image of the previous test');
    const clock = manualClock();
    const cached = new RegistryImageResolver({ insecureRegistries: [host], cacheTtlMs: 30_000, clock });
    assert.equal((await cached.resolve(`${host}/ferry/test-step:1.0`)).digest, firstDigest);

    const secondDigest = await buildAndPushImage(host, 'ferry/test-step', '1.0', 'second content\n', { log });
    assert.notEqual(secondDigest, firstDigest);
    assert.equal((await resolver.resolve(`${host}/ferry/test-step:1.0`)).digest, secondDigest, 'TTL 0 sees the new push at once');
    assert.equal((await cached.resolve(`${host}/ferry/test-step:1.0`)).digest, firstDigest, 'within the TTL the cached digest is kept');
    clock.advance(30_001);
    assert.equal((await cached.resolve(`${host}/ferry/test-step:1.0`)).digest, secondDigest, 'after the TTL the tag is looked up again');

    const pinned = `${host}/ferry/test-step@${firstDigest}`;
    assert.deepEqual(await resolver.resolve(pinned), { reference: pinned, pinned, digest: firstDigest });
    // Proof of "no network": the same on a port where nothing listens, and with a tag beside the digest.
    const nowhere = `127.0.0.1:${await freePort()}/ferry/test-step:1.0@${firstDigest}`;
    assert.deepEqual(await resolver.resolve(nowhere), { reference: nowhere, pinned: nowhere.replace(':1.0@', '@'), digest: firstDigest });
  });

  it('resolves Docker schema 2 manifests too', async () => {
    const digest = await buildAndPushImage(host, 'ferry/docker-format', 'v1', 'docker format\n', { format: 'v2s2', log });
    assert.equal((await resolver.resolve(`${host}/ferry/docker-format:v1`)).digest, digest);
  });

  it('hashes the manifest when the registry sends no Docker-Content-Digest', async () => {
    const digest = await buildAndPushImage(host, 'ferry/no-header', 'v1', 'no header\n', { log });
    const proxy = await startProxy(host, (res) => { res.removeHeader('docker-content-digest'); });
    try {
      const viaProxy = new RegistryImageResolver({ insecureRegistries: [proxy.host], cacheTtlMs: 0 });
      assert.equal((await viaProxy.resolve(`${proxy.host}/ferry/no-header:v1`)).digest, digest);
      assert.deepEqual(proxy.methods, ['HEAD', 'GET'], 'HEAD first, then GET for the body');
    } finally {
      await proxy.stop();
    }
  });

  it('asks the registry once for a burst of lookups, and not again within the TTL', async () => {
    const digest = await buildAndPushImage(host, 'ferry/burst', 'v1', 'burst\n', { log });
    const proxy = await startProxy(host, () => {});
    try {
      const clock = manualClock();
      const cached = new RegistryImageResolver({ insecureRegistries: [proxy.host], cacheTtlMs: 30_000, clock });
      const reference = `${proxy.host}/ferry/burst:v1`;
      const burst = await Promise.all(Array.from({ length: 20 }, () => cached.resolve(reference)));
      assert.ok(burst.every((r) => r.digest === digest));
      clock.advance(29_000);
      assert.equal((await cached.resolve(reference)).digest, digest);
      assert.deepEqual(proxy.methods, ['HEAD']);
    } finally {
      await proxy.stop();
    }
  });

  it('reports an unknown tag as not found, naming the tag, not transient', async () => {
    const reference = `${host}/ferry/test-step:9.9`;
    await rejectsWith(resolver.resolve(reference), reference, false, /not found: tag 9\.9 does not exist in .*ferry\/test-step \(it has 1\.0\)/);
  });

  it('reports an unknown repository as not found, naming it, not transient', async () => {
    const reference = `${host}/ferry/no-such-repo:1.0`;
    await rejectsWith(resolver.resolve(reference), reference, false, /not found: repository ferry\/no-such-repo does not exist/);
  });

  it('refuses an invalid reference without asking the registry', async () => {
    const reference = `${host}/Ferry/Upper:1`;
    await rejectsWith(resolver.resolve(reference), reference, false, /lowercase/);
  });

  it('suggests insecureRegistries when https meets a plain-http registry', async () => {
    // Allowed as a private registry, but not named insecure: spoken to over https.
    const strict = new RegistryImageResolver({ allowedPrivateRegistries: [host], cacheTtlMs: 0 });
    const reference = `${host}/ferry/test-step:1.0`;
    await rejectsWith(strict.resolve(reference), reference, true, /registry 127\.0\.0\.1:\d+ unreachable; if .* serves plain http, list it in insecureRegistries/);
  });
});

describe('a registry that is down or failing', () => {
  it('a closed port is transient, and the message does not echo the socket error', async () => {
    const port = await freePort();
    const resolver = new RegistryImageResolver({ insecureRegistries: [`127.0.0.1:${port}`] });
    const reference = `127.0.0.1:${port}/ferry/test-step:1.0`;
    const err = await rejectsWith(resolver.resolve(reference), reference, true, /registry 127\.0\.0\.1:\d+ unreachable$/);
    assert.doesNotMatch(err.message, /ECONNREFUSED/);
    assert.match(String((err.cause as Error | undefined)?.cause), /ECONNREFUSED/, 'the socket error stays in cause, for logs');
  });

  it('a port that fetch refuses (WHATWG bad ports) is not transient', async () => {
    const resolver = new RegistryImageResolver({ insecureRegistries: ['127.0.0.1:6000'] });
    const reference = '127.0.0.1:6000/ferry/test-step:1.0';
    await rejectsWith(resolver.resolve(reference), reference, false, /refuses that port/);
  });

  it('a stopped registry is transient', setupTimeout, async () => {
    const registry = await startRegistry({ log });
    const resolver = new RegistryImageResolver({ insecureRegistries: [registry.host], cacheTtlMs: 0 });
    const digest = await buildAndPushImage(registry.host, 'ferry/short-lived', '1', 'short-lived\n', { log });
    const reference = `${registry.host}/ferry/short-lived:1`;
    assert.equal((await resolver.resolve(reference)).digest, digest);
    await registry.stop();
    await rejectsWith(resolver.resolve(reference), reference, true, /unreachable/);
  });

  for (const [status, wording] of [[503, /answered HTTP 503/], [502, /answered HTTP 502/], [429, /rate limiting \(HTTP 429\)/]] as const) {
    it(`HTTP ${status} is transient`, async () => {
      const server = await startServer((_req, res) => { res.writeHead(status).end(); });
      try {
        const resolver = new RegistryImageResolver({ insecureRegistries: [server.host] });
        const reference = `${server.host}/ferry/test-step:1.0`;
        await rejectsWith(resolver.resolve(reference), reference, true, wording);
      } finally {
        await server.stop();
      }
    });
  }

  it('a registry that never answers times out, transient', async () => {
    const server = await startServer(() => { /* never answers */ });
    try {
      const resolver = new RegistryImageResolver({ insecureRegistries: [server.host], requestTimeoutMs: 300 });
      const reference = `${server.host}/ferry/test-step:1.0`;
      await rejectsWith(resolver.resolve(reference), reference, true, /unreachable: no answer within 300 ms/);
    } finally {
      await server.stop();
    }
  });

  it('a failure is not cached: the next call asks again', async () => {
    let calls = 0;
    const server = await startServer((_req, res) => { calls++; res.writeHead(503).end(); });
    try {
      const resolver = new RegistryImageResolver({ insecureRegistries: [server.host], cacheTtlMs: 60_000 });
      const reference = `${server.host}/ferry/test-step:1.0`;
      await rejectsWith(resolver.resolve(reference), reference, true, /503/);
      await rejectsWith(resolver.resolve(reference), reference, true, /503/);
      assert.equal(calls, 2);
    } finally {
      await server.stop();
    }
  });
});

describe('a registry behind htpasswd Basic auth', () => {
  const alice = { username: 'alice', password: 'wonder:land' }; // ':' in the password on purpose
  let registry: TestRegistry | undefined;
  let host = '';
  let digest = '';
  let reference = '';
  const secretFor = (username: string, password: string): string =>
    JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } } });

  before(async () => {
    registry = await startRegistry({ auth: { htpasswd: [alice] }, log });
    host = registry.host;
    reference = `${host}/private/step:1.0`;
    digest = await buildAndPushImage(host, 'private/step', '1.0', 'private\n', { credentials: alice, log });
  }, setupTimeout);
  after(() => registry?.stop());

  it('resolves with the credentials of a dockerconfigjson Secret', async () => {
    const resolver = new RegistryImageResolver({ insecureRegistries: [host] });
    const resolved = await resolver.resolve(reference, credentialsFromDockerConfig(secretFor(alice.username, alice.password)));
    assert.equal(resolved.digest, digest);
  });

  it('without credentials: not transient, says credentials are needed', async () => {
    const resolver = new RegistryImageResolver({ insecureRegistries: [host] });
    await rejectsWith(resolver.resolve(reference), reference, false, /requires credentials .* none were given/);
  });

  it('with a wrong password: not transient, says the credentials were refused', async () => {
    const resolver = new RegistryImageResolver({ insecureRegistries: [host] });
    await rejectsWith(resolver.resolve(reference, credentialsFromDockerConfig(secretFor('alice', 'wrong'))), reference, false,
      /access denied .*HTTP 401.*credentials were refused/);
  });

  it('keys the cache by credentials: a right answer is not reused for wrong credentials', async () => {
    const resolver = new RegistryImageResolver({ insecureRegistries: [host], cacheTtlMs: 60_000 });
    const right = credentialsFromDockerConfig(secretFor(alice.username, alice.password));
    assert.equal((await resolver.resolve(reference, right)).digest, digest);
    await rejectsWith(resolver.resolve(reference, credentialsFromDockerConfig(secretFor('alice', 'wrong'))), reference, false, /credentials/);
    assert.equal((await resolver.resolve(reference, right)).digest, digest);
  });
});

describe('a registry behind the Docker token flow', () => {
  const bob = { username: 'bob', password: 'builder' };
  const identityToken = 'refresh-token-of-bob';
  let tokens: TokenServer | undefined;
  let registry: TestRegistry | undefined;
  let host = '';
  let digest = '';
  let reference = '';

  before(async () => {
    tokens = await startTokenServer({ users: [bob], identityTokens: { [identityToken]: bob.username } });
    registry = await startRegistry({ auth: { token: tokens.registryAuth }, log });
    host = registry.host;
    reference = `${host}/team/train:2.0`;
    digest = await buildAndPushImage(host, 'team/train', '2.0', 'token-protected\n', { credentials: bob, log });
  }, setupTimeout);
  after(async () => {
    await registry?.stop();
    await tokens?.stop();
  });

  // The token service is another port on 127.0.0.1: a loopback address, so it is listed.
  const resolver = (): RegistryImageResolver => new RegistryImageResolver({ insecureRegistries: [host], allowedTokenRealms: [tokens?.host ?? ''], cacheTtlMs: 0 });

  it('resolves with username and password, fetching a token from the realm', async () => {
    const before = tokens?.issued.length ?? 0;
    assert.equal((await resolver().resolve(reference, () => bob)).digest, digest);
    assert.deepEqual(tokens?.issued.slice(before), [{ subject: 'bob', grant: 'basic', scope: 'repository:team/train:pull' }]);
  });

  it('resolves with an identity token through the OAuth2 refresh grant', async () => {
    const before = tokens?.issued.length ?? 0;
    const credentials: RegistryCredentials = { username: '<token>', token: identityToken };
    assert.equal((await resolver().resolve(reference, () => credentials)).digest, digest);
    assert.deepEqual(tokens?.issued.slice(before), [{ subject: 'bob', grant: 'refresh_token', scope: 'repository:team/train:pull' }]);
  });

  it('anonymous: access denied, not transient, says none were given', async () => {
    await rejectsWith(resolver().resolve(reference), reference, false, /access denied .*none were given/);
  });

  it('a wrong password is refused by the token service, not transient', async () => {
    await rejectsWith(resolver().resolve(reference, () => ({ username: 'bob', password: 'nope' })), reference, false,
      /token service .* refused the credentials/);
  });
});

// ---------------------------------------------------------------------------------------------
// Small local servers: a token service (what auth.docker.io does), a header-stripping proxy in
// front of the real registry, and a server for status codes a healthy registry never sends.

interface TestServer { host: string; stop(): Promise<void> }

async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no listen address');
  return {
    host: `127.0.0.1:${address.port}`,
    stop: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function startProxy(upstream: string, edit: (res: ServerResponse) => void): Promise<TestServer & { methods: string[] }> {
  const methods: string[] = [];
  const server = await startServer((req, res) => {
    methods.push(req.method ?? '');
    const [hostname, port] = upstream.split(':');
    const forward = request({ hostname, port, path: req.url, method: req.method, headers: req.headers }, (upstreamRes) => {
      for (const [name, value] of Object.entries(upstreamRes.headers)) if (value !== undefined) res.setHeader(name, value);
      edit(res);
      res.writeHead(upstreamRes.statusCode ?? 502);
      upstreamRes.pipe(res);
    });
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  return { ...server, methods };
}

interface TokenServer extends TestServer {
  registryAuth: { realm: string; service: string; issuer: string; rootCertBundle: string };
  issued: Array<{ subject: string; grant: string; scope: string }>;
}

/**
 * Issues registry JWTs (RS256, certificate in the x5c header, which docker-registry checks
 * against its rootcertbundle) to users with the right Basic password or identity token.
 */
async function startTokenServer(options: { users: Array<{ username: string; password: string }>; identityTokens: Record<string, string> }): Promise<TokenServer> {
  const { key, cert } = await selfSignedCert();
  const certDer = cert.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const service = 'ferry-test-registry';
  const issuer = 'ferry-test-token-service';
  const issued: TokenServer['issued'] = [];
  const b64url = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');

  const issue = (res: ServerResponse, subject: string, grant: string, scopes: string[]): void => {
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      return type === undefined || name === undefined ? [] : [{ type, name, actions: (actions ?? '').split(',').filter(Boolean) }];
    });
    const header = b64url({ typ: 'JWT', alg: 'RS256', x5c: [certDer] });
    const claims = b64url({ iss: issuer, sub: subject, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access });
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), key).toString('base64url');
    const token = `${header}.${claims}.${signature}`;
    issued.push({ subject, grant, scope: scopes.join(' ') });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  };

  const server = await startServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token.local');
    if (url.pathname !== '/token') return void res.writeHead(404).end();
    if (req.method === 'GET') {
      const authorization = req.headers.authorization ?? '';
      if (!authorization.startsWith('Basic ')) return issue(res, '', 'anonymous', []); // anonymous: a token that may do nothing
      const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const user = options.users.find((u) => u.username === decoded.slice(0, colon) && u.password === decoded.slice(colon + 1));
      if (user === undefined) return void res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"incorrect username or password"}');
      // buildah asks for pull,push when it pushes; grant what was asked.
      return issue(res, user.username, 'basic', url.searchParams.getAll('scope'));
    }
    if (req.method === 'POST') {
      let body = '';
      req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => {
        const form = new URLSearchParams(body);
        const subject = options.identityTokens[form.get('refresh_token') ?? ''];
        if (form.get('grant_type') !== 'refresh_token' || subject === undefined) return void res.writeHead(401).end('{"error":"invalid_grant"}');
        issue(res, subject, 'refresh_token', (form.get('scope') ?? '').split(' ').filter(Boolean));
      });
      return;
    }
    res.writeHead(405).end();
  });
  return { ...server, issued, registryAuth: { realm: `http://${server.host}/token`, service, issuer, rootCertBundle: cert } };
}

/** An RSA key and a self-signed certificate for it; node:crypto cannot make certificates, openssl can. */
async function selfSignedCert(): Promise<{ key: string; cert: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-token-'));
  try {
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=ferry-test-token',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    return { key: await readFile(join(dir, 'key.pem'), 'utf8'), cert: await readFile(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
