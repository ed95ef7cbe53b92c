// The registry client against registries that try to hurt the operator, all real servers on
// 127.0.0.1: endless or huge bodies (token, manifest, tag list, error), registries that accept
// and never answer, token realms on other hosts, redirects, and the address policy on IP
// literals, metadata names and names that resolve (or rebind) to forbidden addresses.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { AddressRefusedError, type ResolvedAddress } from '../../operator/images/guarded-agent.ts';
import { RegistryImageResolver, type RegistryImageResolverOptions } from '../../operator/images/registry-client.ts';
import { ImageResolutionError } from '../../operator/images/resolver.ts';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const MiB = 1024 * 1024;
const log = (line: string): void => { process.stderr.write(`[hardening] ${line}\n`); };

interface TestServer {
  host: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  requests: IncomingMessage[];
  stop(): Promise<void>;
}

const servers: TestServer[] = [];
const resolvers: RegistryImageResolver[] = [];
after(async () => {
  await Promise.all(resolvers.map((r) => r.close()));
  await Promise.all(servers.map((s) => s.stop()));
});

async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => { requests.push(req); handler(req, res); });
  const state = { connections: 0 };
  server.on('connection', (socket: Socket) => { state.connections++; sockets.add(socket); socket.on('close', () => sockets.delete(socket)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no listen address');
  const started: TestServer = {
    host: `127.0.0.1:${address.port}`,
    port: address.port,
    get connections() { return state.connections; },
    requests,
    stop: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
  servers.push(started);
  return started;
}

function resolverWith(options: RegistryImageResolverOptions): RegistryImageResolver {
  const resolver = new RegistryImageResolver({ cacheTtlMs: 0, ...options });
  resolvers.push(resolver);
  return resolver;
}

/** Rejects with an ImageResolutionError of the given class and wording; returns it and how long it took. */
async function failure(promise: Promise<unknown>, transient: boolean, wording: RegExp): Promise<{ err: ImageResolutionError; ms: number }> {
  const started = Date.now();
  let caught: unknown;
  await promise.then(() => assert.fail('expected a failure'), (err: unknown) => { caught = err; });
  const ms = Date.now() - started;
  assert.ok(caught instanceof ImageResolutionError, `not an ImageResolutionError: ${String(caught)}`);
  assert.match(caught.message, wording);
  assert.equal(caught.transient, transient, `transient should be ${transient}: ${caught.message}`);
  return { err: caught, ms };
}

function findCause<T>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof type) return e;
  return undefined;
}

/** Streams `total` bytes of `fill` after `prefix`, honouring backpressure; reports what it wrote and when the peer went away. */
function stream(res: ServerResponse, prefix: string, total: number): { written: () => number; closed: Promise<number> } {
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const startedAt = Date.now();
  const closed = new Promise<number>((resolve) => res.on('close', () => resolve(Date.now() - startedAt)));
  const pump = (): void => {
    while (written < total && !res.destroyed) {
      written += chunk.length;
      if (!res.write(chunk)) { res.once('drain', pump); return; }
    }
    if (!res.destroyed) res.end();
  };
  res.write(prefix);
  pump();
  return { written: () => written, closed };
}

/** Samples this process's RSS until stopped; returns before / peak / after in MiB. */
function watchRss(): { stop(): { before: number; peak: number; after: number } } {
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
  return {
    stop: () => {
      clearInterval(timer);
      const after = process.memoryUsage().rss;
      peak = Math.max(peak, after);
      return { before: before / MiB, peak: peak / MiB, after: after / MiB };
    },
  };
}

const challenge = (realm: string): Record<string, string> => ({ 'WWW-Authenticate': `Bearer realm="${realm}",service="test"` });

/** A registry that wants a Bearer token "good" from `realm()` and then serves DIGEST for every manifest. */
function tokenRegistry(realm: () => string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.headers.authorization !== 'Bearer good') return void res.writeHead(401, challenge(realm())).end();
    res.writeHead(200, { 'Docker-Content-Digest': DIGEST, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }).end();
  };
}

describe('response bodies are read with a limit', () => {
  it('a 1 GiB token response: refused at 1 MiB, not transient, the connection destroyed, memory bounded', async () => {
    let body: ReturnType<typeof stream> | undefined;
    const server = await startServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'Content-Type': 'application/json' }); // no Content-Length: endless as far as the client knows
        body = stream(res, '{"token":"', 1024 * MiB);
        return;
      }
      tokenRegistry(() => `http://${server.host}/token`)(req, res);
    });
    const resolver = resolverWith({ insecureRegistries: [server.host] });
    const rss = watchRss();
    const { err } = await failure(resolver.resolve(`${server.host}/team/app:1`), false,
      /the token response sent by token service http:\/\/127\.0\.0\.1:\d+ is larger than the limit of 1 MiB; refused/);
    const memory = rss.stop();
    assert.ok(body, 'the token service was asked');
    const closedAfter = await Promise.race([body.closed, new Promise<number>((r) => setTimeout(() => r(-1), 5_000))]);
    const written = body.written() / MiB;
    log(`1 GiB token body: rss before ${memory.before.toFixed(1)} MiB, peak ${memory.peak.toFixed(1)} MiB, after ${memory.after.toFixed(1)} MiB; ` +
      `the server wrote ${written.toFixed(1)} MiB before the connection closed (${closedAfter} ms)`);
    assert.ok(closedAfter >= 0, 'the client destroyed the connection');
    assert.ok(written < 64, `the server could write ${written} MiB: the body was not cut off`);
    assert.ok(memory.peak - memory.before < 64, `rss grew by ${(memory.peak - memory.before).toFixed(1)} MiB`);
    assert.doesNotMatch(err.message, /aaaa/);
  });

  it('a token response that declares 1 GiB is refused before reading it', async () => {
    let body: ReturnType<typeof stream> | undefined;
    const server = await startServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(1024 * MiB) });
        body = stream(res, '', 1024 * MiB);
        return;
      }
      tokenRegistry(() => `http://${server.host}/token`)(req, res);
    });
    await failure(resolverWith({ insecureRegistries: [server.host] }).resolve(`${server.host}/team/app:1`), false, /larger than the limit of 1 MiB/);
    assert.ok((await body?.closed) !== undefined);
    assert.ok((body?.written() ?? 0) < 64 * MiB);
  });

  it('an endless manifest: refused at 4 MiB, not transient', async () => {
    let body: ReturnType<typeof stream> | undefined;
    const server = await startServer((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(200).end(); // no digest header: the client must GET and hash
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' });
      body = stream(res, '{"schemaVersion":2,"x":"', 1024 * MiB);
    });
    const rss = watchRss();
    await failure(resolverWith({ insecureRegistries: [server.host] }).resolve(`${server.host}/team/app:1`), false,
      /the manifest sent by registry 127\.0\.0\.1:\d+ is larger than the limit of 4 MiB; refused/);
    const memory = rss.stop();
    await body?.closed;
    log(`endless manifest: rss before ${memory.before.toFixed(1)} MiB, peak ${memory.peak.toFixed(1)} MiB; server wrote ${((body?.written() ?? 0) / MiB).toFixed(1)} MiB`);
    assert.ok((body?.written() ?? 0) < 64 * MiB);
    assert.ok(memory.peak - memory.before < 64);
  });

  it('an endless error body: still the status (transient for 503), the body cut off at 64 KiB', async () => {
    let body: ReturnType<typeof stream> | undefined;
    // HEAD has no body: a 405 sends the client to GET, whose 503 carries the endless body.
    const server = await startServer((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(405).end();
      res.writeHead(503, { 'Content-Type': 'application/json' });
      body = stream(res, '{"errors":[{"code":"UNAVAILABLE","message":"', 1024 * MiB);
    });
    await failure(resolverWith({ insecureRegistries: [server.host] }).resolve(`${server.host}/team/app:1`), true, /registry 127\.0\.0\.1:\d+ answered HTTP 503$/);
    await body?.closed;
    assert.ok((body?.written() ?? 0) < 64 * MiB);
  });

  it('an endless tag list after a 404: still not found, saying the list was too large', async () => {
    const server = await startServer((req, res) => {
      if (req.url?.includes('/tags/list')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        stream(res, '{"name":"team/app","tags":["', 1024 * MiB);
        return;
      }
      res.writeHead(404).end();
    });
    await failure(resolverWith({ insecureRegistries: [server.host] }).resolve(`${server.host}/team/app:1`), false,
      /not found: .*team\/app has no tag 1, or the repository does not exist \(its tag list is larger than 1 MiB and was not read\)/);
  });
});

describe('every request has a timeout, every resolution a deadline', () => {
  it('a registry that accepts the connection and never answers: transient, within the deadline', async () => {
    const sockets = new Set<Socket>();
    const tcp = createTcpServer((socket) => { sockets.add(socket); /* reads nothing, writes nothing */ });
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const port = (tcp.address() as { port: number }).port;
    try {
      // The request timeout alone would wait 10 s; the resolution's deadline ends it first.
      const resolver = resolverWith({ insecureRegistries: [`127.0.0.1:${port}`], resolutionTimeoutMs: 500 });
      const { ms } = await failure(resolver.resolve(`127.0.0.1:${port}/team/app:1`), true,
        /registry 127\.0\.0\.1:\d+ unreachable: the resolution did not finish within 500 ms/);
      log(`silent registry: failed after ${ms} ms (deadline 500 ms)`);
      assert.ok(ms >= 450 && ms < 2_000, `took ${ms} ms`);
      assert.equal(sockets.size, 1, 'it did connect');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    }
  });

  it('a registry that drips its body a byte at a time: the request timeout covers the body', async () => {
    const server = await startServer((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(200).end();
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' });
      const timer = setInterval(() => res.write('a'), 50);
      res.on('close', () => clearInterval(timer));
    });
    const { ms } = await failure(resolverWith({ insecureRegistries: [server.host], requestTimeoutMs: 400 }).resolve(`${server.host}/team/app:1`), true,
      /registry 127\.0\.0\.1:\d+ unreachable while sending the manifest: no answer within 400 ms/);
    assert.ok(ms < 2_000, `took ${ms} ms`);
  });

  it('a token service that never answers: transient, within the deadline', async () => {
    const tokens = await startServer(() => { /* never answers */ });
    const registry = await startServer(tokenRegistry(() => `http://${tokens.host}/token`));
    const resolver = resolverWith({ insecureRegistries: [registry.host], allowedTokenRealms: [tokens.host], resolutionTimeoutMs: 400 });
    const { ms } = await failure(resolver.resolve(`${registry.host}/team/app:1`), true,
      /token service http:\/\/127\.0\.0\.1:\d+ unreachable: the resolution did not finish within 400 ms/);
    assert.ok(ms < 2_000, `took ${ms} ms`);
  });
});

describe('token realms', () => {
  it('a realm on another host is refused without asking it; allowedTokenRealms allows it', async () => {
    const tokens = await startServer((_req, res) => { res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"token":"good"}'); });
    // localhost is another host name than 127.0.0.1, though the same machine.
    const realm = `http://localhost:${tokens.port}/token`;
    const registry = await startServer(tokenRegistry(() => realm));
    const { err } = await failure(resolverWith({ insecureRegistries: [registry.host] }).resolve(`${registry.host}/team/app:1`), false,
      /sent us to token service localhost:\d+, which is neither the registry's own host nor an allowed token realm \(allowedTokenRealms\)/);
    assert.equal(tokens.connections, 0, 'the realm was not contacted');
    assert.equal(err.transient, false);

    const allowed = resolverWith({ insecureRegistries: [registry.host], allowedTokenRealms: [`localhost:${tokens.port}`] });
    assert.equal((await allowed.resolve(`${registry.host}/team/app:1`)).digest, DIGEST);
    assert.equal(tokens.requests.length, 1);
  });

  for (const realm of ['http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'http://metadata.google.internal/computeMetadata/v1/', 'http://10.0.0.1:6379/']) {
    it(`a realm at ${new URL(realm).host} is refused`, async () => {
      const registry = await startServer(tokenRegistry(() => realm));
      await failure(resolverWith({ insecureRegistries: [registry.host] }).resolve(`${registry.host}/team/app:1`), false, /neither the registry's own host nor an allowed token realm/);
    });
  }

  it('a listed realm is still subject to the address policy', async () => {
    const registry = await startServer(tokenRegistry(() => 'http://169.254.169.254/token'));
    const { err } = await failure(resolverWith({ insecureRegistries: [registry.host], allowedTokenRealms: ['169.254.169.254'] }).resolve(`${registry.host}/team/app:1`), false,
      /token service http:\/\/169\.254\.169\.254 is not allowed by the operator's address policy: its address is link-local, a cloud metadata endpoint or reserved/);
    assert.equal(findCause(err, AddressRefusedError)?.addressClass, 'metadata');
  });

  it('a token service that redirects is not followed', async () => {
    const elsewhere = await startServer((_req, res) => { res.writeHead(200).end('{"token":"good"}'); });
    const tokens = await startServer((_req, res) => { res.writeHead(302, { Location: `http://${elsewhere.host}/token` }).end(); });
    const registry = await startServer(tokenRegistry(() => `http://${tokens.host}/token`));
    const resolver = resolverWith({ insecureRegistries: [registry.host, elsewhere.host], allowedTokenRealms: [tokens.host] });
    await failure(resolver.resolve(`${registry.host}/team/app:1`), false, /token service http:\/\/127\.0\.0\.1:\d+ answered HTTP 302 \(a redirect\); token requests follow no redirects/);
    assert.equal(elsewhere.connections, 0);
  });
});

describe('the address policy', () => {
  /** A lookup that answers from a table and counts what it was asked. */
  function tableLookup(table: Record<string, string>): { lookup: (hostname: string) => Promise<ResolvedAddress[]>; asked: string[] } {
    const asked: string[] = [];
    return {
      asked,
      lookup: async (hostname) => {
        asked.push(hostname);
        const address = table[hostname];
        if (address === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
        return [{ address, family: address.includes(':') ? 6 : 4 }];
      },
    };
  }

  /** Counts sockets created by net.connect while `fn` runs (the diagnostics channel of node:net). */
  async function socketsCreatedDuring(fn: () => Promise<unknown>): Promise<number> {
    let created = 0;
    const onSocket = (): void => { created++; };
    subscribe('net.client.socket', onSocket);
    try { await fn(); } finally { unsubscribe('net.client.socket', onSocket); }
    return created;
  }

  // 2852039166, 0xa9fea9fe and ::ffff:a9fe:a9fe are 169.254.169.254 too, once the URL parser has read them.
  for (const host of ['169.254.169.254', '169.254.169.254:80', '2852039166:80', '0xa9fea9fe:80', '[::ffff:a9fe:a9fe]', '[fd00:ec2::254]', '[fe80::1]:5000', '0.0.0.0:5000']) {
    it(`a registry at ${host} is refused without a socket, even when listed`, async () => {
      const resolver = resolverWith({ insecureRegistries: [host], allowedPrivateRegistries: [host] });
      let result: { err: ImageResolutionError; ms: number } | undefined;
      const sockets = await socketsCreatedDuring(async () => {
        result = await failure(resolver.resolve(`${host}/latest/meta-data:1`), false,
          /is not allowed by the operator's address policy: its address is link-local, a cloud metadata endpoint or reserved, which is never allowed/);
      });
      assert.equal(sockets, 0, 'no socket was created');
      assert.ok(result !== undefined && result.ms < 1_000);
      assert.ok(findCause(result.err, AddressRefusedError) !== undefined, 'the refusal is in cause, for logs');
    });
  }

  it('metadata.google.internal is refused before any lookup', async () => {
    const dns = tableLookup({ 'metadata.google.internal': '169.254.169.254' });
    const resolver = resolverWith({ insecureRegistries: ['metadata.google.internal'], lookup: dns.lookup });
    await failure(resolver.resolve('metadata.google.internal/computemetadata/v1:1'), false, /not allowed by the operator's address policy/);
    assert.deepEqual(dns.asked, []);
  });

  it('a name resolving to 169.254.169.254 is refused without connecting', async () => {
    const dns = tableLookup({ 'innocent.example.com': '169.254.169.254' });
    const { err } = await failure(resolverWith({ lookup: dns.lookup }).resolve('innocent.example.com/team/app:1'), false,
      /registry innocent\.example\.com is not allowed by the operator's address policy: its address is link-local/);
    assert.deepEqual(dns.asked, ['innocent.example.com']);
    assert.equal(findCause(err, AddressRefusedError)?.addressClass, 'metadata');
    assert.doesNotMatch(err.message, /169\.254/, 'the resolved address is for logs, not for tenants');
  });

  it('a name resolving to loopback is refused unless listed, and the server sees no connection', async () => {
    const server = await startServer((_req, res) => { res.writeHead(200, { 'Docker-Content-Digest': DIGEST }).end(); });
    const name = `registry.internal.test:${server.port}`;
    const dns = tableLookup({ 'registry.internal.test': '127.0.0.1' });
    await failure(resolverWith({ insecureRegistries: [], lookup: dns.lookup }).resolve(`${name}/team/app:1`), false,
      /registry registry\.internal\.test:\d+ is not allowed .*: its address is private or loopback; an administrator can allow it with allowedPrivateRegistries/);
    assert.equal(server.connections, 0);

    // Listed as a private registry (https would be used; insecureRegistries too lists it as trusted).
    const listed = resolverWith({ insecureRegistries: [name], lookup: dns.lookup });
    assert.equal((await listed.resolve(`${name}/team/app:1`)).digest, DIGEST);
    assert.equal(server.connections, 1);
  });

  it('DNS rebinding: the address is checked on every connection, not once for the name', async () => {
    const server = await startServer((_req, res) => { res.writeHead(200, { 'Docker-Content-Digest': DIGEST, Connection: 'close' }).end(); });
    const name = `rebind.example.test:${server.port}`;
    const table: Record<string, string> = { 'rebind.example.test': '127.0.0.1' };
    const dns = tableLookup(table);
    const resolver = resolverWith({ insecureRegistries: [name], lookup: dns.lookup });
    assert.equal((await resolver.resolve(`${name}/team/app:1`)).digest, DIGEST);
    table['rebind.example.test'] = '169.254.169.254'; // the name's owner changes its answer
    await failure(resolver.resolve(`${name}/team/app:1`), false, /not allowed by the operator's address policy: its address is link-local/);
    assert.equal(dns.asked.length, 2, 'looked up again for the new connection');
  });

  it('a name with one allowed and one forbidden address is refused', async () => {
    const lookup = async (): Promise<ResolvedAddress[]> => [{ address: '127.0.0.1', family: 4 }, { address: '169.254.169.254', family: 4 }];
    await failure(resolverWith({ insecureRegistries: ['mixed.example.test'], lookup }).resolve('mixed.example.test/team/app:1'), false, /not allowed/);
  });

  it('an unlisted loopback registry is refused; allowedPrivateRegistries allows it', async () => {
    const server = await startServer((_req, res) => { res.writeHead(200, { 'Docker-Content-Digest': DIGEST }).end(); });
    await failure(resolverWith({}).resolve(`${server.host}/team/app:1`), false, /allowedPrivateRegistries/);
    assert.equal(server.connections, 0);
    // Listed but not insecure: spoken to over https, which this plain-http server cannot do.
    const listed = resolverWith({ allowedPrivateRegistries: [server.host] });
    const sockets = await socketsCreatedDuring(() => failure(listed.resolve(`${server.host}/team/app:1`), true, /unreachable/));
    assert.equal(server.connections, 1, 'it was allowed to connect');
    assert.ok(sockets >= 1, 'the socket counter of the tests above sees sockets');
  });
});

describe('redirects', () => {
  it('are followed a few times, each hop checked; credentials stay with their origin', async () => {
    const final = await startServer((_req, res) => { res.writeHead(200, { 'Docker-Content-Digest': DIGEST }).end(); });
    const registry = await startServer((req, res) => {
      if (req.headers.authorization !== 'Basic dTpw') return void res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="r"' }).end();
      res.writeHead(307, { Location: `http://${final.host}${req.url ?? '/'}` }).end();
    });
    const resolver = resolverWith({ insecureRegistries: [registry.host, final.host] });
    assert.equal((await resolver.resolve(`${registry.host}/team/app:1`, () => ({ username: 'u', password: 'p' }))).digest, DIGEST);
    assert.equal(final.requests[0]?.headers.authorization, undefined, 'Authorization was not sent to another origin');
  });

  it('a redirect to 169.254.169.254 is refused by the address policy', async () => {
    const registry = await startServer((_req, res) => { res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/' }).end(); });
    await failure(resolverWith({ insecureRegistries: [registry.host] }).resolve(`${registry.host}/team/app:1`), false,
      /registry 127\.0\.0\.1:\d+ \(after a redirect\) is not allowed by the operator's address policy: its address is link-local/);
  });

  it('a redirect to an unlisted loopback port is refused; the target sees no connection', async () => {
    const internal = await startServer((_req, res) => { res.writeHead(200, { 'Docker-Content-Digest': DIGEST }).end(); });
    const registry = await startServer((_req, res) => { res.writeHead(302, { Location: `http://${internal.host}/` }).end(); });
    await failure(resolverWith({ insecureRegistries: [registry.host] }).resolve(`${registry.host}/team/app:1`), false, /not allowed by the operator's address policy/);
    assert.equal(internal.connections, 0);
  });

  it('more than 3 redirects in a row are refused', async () => {
    let hops = 0;
    const registry = await startServer((req, res) => { hops++; res.writeHead(302, { Location: `${req.url ?? '/'}x` }).end(); });
    await failure(resolverWith({ insecureRegistries: [registry.host] }).resolve(`${registry.host}/team/app:1`), false, /answered HTTP 302 \(a redirect\) more than 3 times in a row/);
    assert.equal(hops, 4);
  });
});

describe('errors tenants read say no more than reachability', () => {
  it('a closed port on a listed host: "unreachable", with the socket error only in cause', async () => {
    const server = await startServer(() => {});
    const host = server.host;
    await server.stop();
    const { err } = await failure(resolverWith({ insecureRegistries: [host] }).resolve(`${host}/team/app:1`), true, /^image [^ ]+: registry 127\.0\.0\.1:\d+ unreachable$/);
    assert.doesNotMatch(err.message, /ECONNREFUSED|connect/);
  });
});
