// Runs the ArtifactStore contract against HttpArtifactStore talking to a real artifact server
// (artifact-server.ts) on 127.0.0.1 over a temp-dir FileArtifactStore, plus what only the
// server promises: it serves nothing without a valid, unexpired signature for exactly that
// method and key, a create grant works once, and its error bodies give nothing away.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { startArtifactServer, type RunningArtifactServer } from '../../operator/artifacts/artifact-server.ts';
import { FileArtifactStore } from '../../operator/artifacts/file-store.ts';
import { HttpArtifactStore } from '../../operator/artifacts/http-store.ts';
import { signedUrl, type UrlGrant } from '../../operator/artifacts/signed-urls.ts';
import { createLogger } from '../../operator/observability/logger.ts';
import { describeArtifactStoreContract } from './artifact-store-contract.ts';

const signingKey = randomBytes(32);
let dir = '';
let served: FileArtifactStore | undefined;
let server: RunningArtifactServer | undefined;
/** The server's log lines: the place where paths may appear, unlike response bodies. */
const logLines: string[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-http-store-'));
  served = new FileArtifactStore(pathToFileURL(join(dir, 'artifacts')).href);
  server = await startArtifactServer({
    store: served,
    signingKey,
    log: createLogger({ level: 'debug', write: (line) => logLines.push(line) }),
    host: '127.0.0.1',
    port: 0,
  });
});

after(async () => {
  await server?.close();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function running(): { server: RunningArtifactServer; served: FileArtifactStore } {
  if (server === undefined || served === undefined) throw new Error('the artifact server is not running (before() failed?)');
  return { server, served };
}

/** A client of the running server; it signs its own requests with the server's key. */
function client(): HttpArtifactStore {
  const { server, served } = running();
  return new HttpArtifactStore(served.root, server.url, signingKey);
}

const nowSeconds = () => Math.floor(Date.now() / 1000);
const inAMinute = () => new Date(Date.now() + 60_000);

/** A URL for `grant` signed with the server's key (or `key`), for requests the client would not make. */
function signed(grant: Omit<UrlGrant, 'expiresAt'> & { expiresAt?: number }, key = signingKey): string {
  return signedUrl(running().server.url, key, { expiresAt: nowSeconds() + 60, ...grant });
}

// One server serves every contract test, so each test's cleanup empties the served directory
// (the store recreates it on the next write) and the next test starts from an empty store.
describeArtifactStoreContract('artifact server (HttpArtifactStore)', async () => ({
  store: client(),
  cleanup: () => rm(running().served.rootDir, { recursive: true, force: true }),
}));

describe('artifact server', () => {
  it('answers its health check without a signature', async () => {
    const res = await fetch(`${running().server.url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok\n');
  });

  it('refuses unsigned requests with 403 and stores nothing', async () => {
    const store = client();
    const { uri } = await store.createOnce('unsigned/present', Buffer.from('secret'));
    const base = `${running().server.url}/v1/objects/unsigned`;
    for (const [method, path] of [['GET', '/present'], ['HEAD', '/present'], ['PUT', '/new'], ['DELETE', '/present']] as const) {
      const res = await fetch(`${base}${path}`, { method, ...(method === 'PUT' ? { body: 'x' } : {}) });
      assert.equal(res.status, 403, `${method} ${path}`);
      if (method !== 'HEAD') assert.doesNotMatch(await res.text(), /secret/);
    }
    assert.equal(await store.exists(store.uriFor('unsigned/new')), false);
    assert.deepEqual(await store.readAll(uri, 100), Buffer.from('secret'), 'the unsigned DELETE removed nothing');
  });

  it('refuses a URL signed for GET when used with PUT or DELETE (405)', async () => {
    const store = client();
    const { uri } = await store.createOnce('methods/present', Buffer.from('original'));
    const readOnly = signed({ method: 'GET', key: 'methods/present' });
    assert.equal((await fetch(readOnly, { method: 'PUT', body: 'overwritten' })).status, 405);
    assert.equal((await fetch(readOnly, { method: 'DELETE' })).status, 405);
    // A read grant does allow HEAD, the read method exists() uses.
    assert.equal((await fetch(readOnly, { method: 'HEAD' })).status, 200);
    assert.deepEqual(await store.readAll(uri, 100), Buffer.from('original'));
    // And a GET grant for a key that is free does not let anyone create it either.
    assert.equal((await fetch(signed({ method: 'GET', key: 'methods/free' }), { method: 'PUT', body: 'x' })).status, 405);
    assert.equal(await store.exists(store.uriFor('methods/free')), false);
  });

  it('refuses an expired grant with 403', async () => {
    const store = client();
    const { uri } = await store.createOnce('expired/object', Buffer.from('old news'));
    const expired = signed({ method: 'GET', key: 'expired/object', expiresAt: nowSeconds() - 60 });
    const res = await fetch(expired);
    assert.equal(res.status, 403);
    assert.match(await res.text(), /expired/);
    // The same through the grants a step Pod is given.
    assert.equal((await fetch(store.readGrant(uri, new Date(Date.now() - 60_000)).url)).status, 403);
    const lateCreate = store.createGrant('expired/new', new Date(Date.now() - 60_000));
    assert.equal((await fetch(lateCreate.url, { method: 'PUT', body: 'x' })).status, 403);
    assert.equal(await store.exists(store.uriFor('expired/new')), false);
  });

  it('refuses a URL signed with another key (403)', async () => {
    const store = client();
    await store.createOnce('foreign/object', Buffer.from('x'));
    assert.equal((await fetch(signed({ method: 'GET', key: 'foreign/object' }, randomBytes(32)))).status, 403);
  });

  it('refuses a URL signed for key A whose path was changed to key B (403)', async () => {
    const store = client();
    await store.createOnce('tenant-a/report.json', Buffer.from('a'));
    await store.createOnce('tenant-b/report.json', Buffer.from('b-secret'));
    const forA = new URL(store.readGrant(store.uriFor('tenant-a/report.json'), inAMinute()).url);
    assert.equal((await fetch(forA)).status, 200, 'the untouched URL works');
    const forB = new URL(forA);
    forB.pathname = '/v1/objects/tenant-b/report.json';
    const res = await fetch(forB);
    assert.equal(res.status, 403);
    assert.doesNotMatch(await res.text(), /b-secret/);
    // Nor does a create grant for A create B.
    const createA = new URL(store.createGrant('tenant-a/new', inAMinute()).url);
    createA.pathname = '/v1/objects/tenant-b/new';
    assert.equal((await fetch(createA, { method: 'PUT', body: 'x' })).status, 403);
    assert.equal(await store.exists(store.uriFor('tenant-b/new')), false);
  });

  it('a create grant works once: 201, then 412, and the first bytes stay', async () => {
    const store = client();
    const grant = store.createGrant('runs/r1/step-a/report.json', inAMinute());
    const first = await fetch(grant.url, { method: 'PUT', body: '{"ok":true}', ...(grant.headers ? { headers: grant.headers } : {}) });
    assert.equal(first.status, 201);
    const stored = (await first.json()) as { uri: string; size: number };
    assert.equal(stored.uri, store.uriFor('runs/r1/step-a/report.json'));
    assert.equal(stored.size, 11);
    const second = await fetch(grant.url, { method: 'PUT', body: '{"ok":false}' });
    assert.equal(second.status, 412);
    assert.deepEqual(await store.readAll(stored.uri, 100), Buffer.from('{"ok":true}'));
  });

  it('a read grant GET returns the bytes, and HEAD their length', async () => {
    const store = client();
    const bytes = randomBytes(70_000);
    const { uri } = await store.createOnce('runs/r1/step-a/output.bin', bytes);
    const grant = store.readGrant(uri, inAMinute());
    const res = await fetch(grant.url, grant.headers ? { headers: grant.headers } : {});
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(bytes.length));
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    const head = await fetch(grant.url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(bytes.length));
  });

  it('answers a malformed grant method with a status instead of dropping the connection', async () => {
    // Query values like "constructor" name properties of every object, not grant methods.
    for (const method of ['constructor', '__proto__', 'toString', 'POST']) {
      const url = new URL(signed({ method: 'GET', key: 'any/key' }));
      url.searchParams.set('method', method);
      const res = await fetch(url);
      assert.ok([403, 405].includes(res.status), `method=${method}: HTTP ${res.status}`);
    }
  });

  it('error bodies never contain file paths, URIs or keys', async () => {
    const store = client();
    await store.createOnce('leak/exists', Buffer.from('x'));
    const base = running().server.url;
    const cases: Array<[what: string, url: string, init: RequestInit, status: number]> = [
      ['unsigned', `${base}/v1/objects/leak/exists`, {}, 403],
      ['wrong method', signed({ method: 'GET', key: 'leak/exists' }), { method: 'PUT', body: 'x' }, 405],
      ['expired', signed({ method: 'GET', key: 'leak/exists', expiresAt: nowSeconds() - 1 }), {}, 403],
      ['missing object', signed({ method: 'GET', key: 'leak/missing' }), {}, 404],
      ['a directory', signed({ method: 'GET', key: 'leak' }), {}, 404],
      ['already exists', signed({ method: 'PUT', key: 'leak/exists' }), { method: 'PUT', body: 'y' }, 412],
      ['malformed percent-encoding', `${base}/v1/objects/leak/%E0%A4%A`, {}, 400],
      ['unknown endpoint', `${base}/v1/nothing-here`, {}, 404],
      // A validly signed but invalid key fails inside the store, whose message names the root.
      ['invalid key', signed({ method: 'GET', key: '.ferry-tmp/x' }), {}, 500],
      ['invalid list prefix', signed({ method: 'LIST', key: 'a//' }), {}, 500],
    ];
    const { served } = running();
    for (const [what, url, init, status] of cases) {
      const logged = logLines.length;
      const res = await fetch(url, init);
      assert.equal(res.status, status, what);
      const body = await res.text();
      for (const secret of [dir, served.rootDir, served.root, 'file:', 'leak/', '.ferry-tmp']) {
        assert.ok(!body.includes(secret), `${what}: body ${JSON.stringify(body)} contains ${JSON.stringify(secret)}`);
      }
      // The details go to the server's log instead, where an operator can find them.
      if (status === 500) assert.ok(logLines.slice(logged).some((line) => line.includes('artifact request failed')), `${what}: nothing logged`);
    }
  });
});
