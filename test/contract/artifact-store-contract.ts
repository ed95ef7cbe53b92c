// The behaviour every ArtifactStore must show, as node:test tests shared by the file://, gs://
// and artifact-server implementations (file-store.test.ts, gcs-store.test.ts,
// http-store.test.ts). Each test opens a fresh, empty store through the factory it is given and
// cleans it up afterwards.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError } from '../../operator/artifacts/store.ts';
import type { ArtifactStore } from '../../operator/artifacts/store.ts';

export interface OpenedStore {
  store: ArtifactStore;
  cleanup(): Promise<void>;
}

/** A limit no test object comes near, for reads that are not about the limit. */
const anySize = 64 * 1024 * 1024;

export function describeArtifactStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  /** Runs `body` against a fresh store, cleaning up even when it fails. */
  const withStore = async (body: (store: ArtifactStore) => Promise<void>): Promise<void> => {
    const opened = await open();
    try {
      await body(opened.store);
    } finally {
      await opened.cleanup();
    }
  };

  describe(`ArtifactStore contract: ${name}`, () => {
    it('putBlob returns the sha256 digest and size of the bytes, under <namespace>/blobs/sha256/', () => withStore(async (store) => {
      const cases = [Buffer.alloc(0), Buffer.from('hello, ferry\n'), randomBytes(300_000)];
      for (const bytes of cases) {
        // Several chunks, so the store must hash across chunk boundaries.
        const stored = await store.putBlob('team-a', Readable.from(chunksOf(bytes, 4096)));
        const hex = sha256(bytes);
        assert.equal(stored.digest, `sha256:${hex}`);
        assert.equal(stored.size, bytes.length);
        assert.equal(stored.uri, store.uriFor(`team-a/blobs/sha256/${hex}`));
        // A limit of exactly the size is enough.
        assert.deepEqual(await store.readAll(stored.uri, bytes.length), bytes);
      }
    }));

    it('putBlob of the same content twice gives the same URI and one blob', () => withStore(async (store) => {
      const bytes = randomBytes(10_000);
      const first = await store.putBlob('team-a', Readable.from([bytes]));
      const second = await store.putBlob('team-a', Readable.from(chunksOf(bytes, 1000)));
      assert.deepEqual(second, first);
      assert.deepEqual(await store.list('team-a/'), [`team-a/blobs/sha256/${sha256(bytes)}`]);
    }));

    it('putBlob of the same content into two namespaces gives two blobs, one in each', () => withStore(async (store) => {
      // Namespaces must not share blobs: a digest one tenant knows must not open another's.
      const bytes = randomBytes(5_000);
      const a = await store.putBlob('team-a', Readable.from([bytes]));
      const b = await store.putBlob('team-b', Readable.from([bytes]));
      assert.notEqual(a.uri, b.uri);
      assert.equal(a.digest, b.digest);
      // uriFor refuses a trailing slash (an empty segment), so build the directory URI by hand.
      assert.ok(a.uri.startsWith(`${store.uriFor('team-a')}/`), a.uri);
      assert.ok(b.uri.startsWith(`${store.uriFor('team-b')}/`), b.uri);
      assert.deepEqual(await store.readAll(a.uri, anySize), bytes);
      assert.deepEqual(await store.readAll(b.uri, anySize), bytes);
      assert.deepEqual(await store.list('team-a/'), [store.keyOf(a.uri)]);
      assert.deepEqual(await store.list('team-b/'), [store.keyOf(b.uri)]);
    }));

    it('putBlob refuses a namespace that is not a valid key', () => withStore(async (store) => {
      for (const namespace of ['', '../outside', '/abs', 'a//b', '.ferry-tmp']) {
        await assert.rejects(store.putBlob(namespace, Readable.from([Buffer.from('x')])), /invalid artifact key/, `putBlob(${JSON.stringify(namespace)})`);
      }
      assert.deepEqual(await store.list(''), []);
    }));

    it('read and readAll give the bytes back', () => withStore(async (store) => {
      const bytes = randomBytes(100_000);
      const { uri } = await store.createOnce('runs/r1/output.bin', bytes);
      assert.deepEqual(await store.readAll(uri, anySize), bytes);
      assert.deepEqual(await collect(await store.read(uri)), bytes);
    }));

    it('readAll of an object over the limit throws ObjectTooLargeError', () => withStore(async (store) => {
      const bytes = randomBytes(1000);
      const { uri } = await store.createOnce('reports/big.json', bytes);
      for (const limit of [999, 1, 0]) {
        await assert.rejects(store.readAll(uri, limit), (err: unknown) => {
          assert.ok(err instanceof ObjectTooLargeError, `limit ${limit}: expected ObjectTooLargeError, got ${String(err)}`);
          assert.equal(err.name, 'ObjectTooLargeError');
          assert.equal(err.uri, uri);
          return true;
        });
      }
      // The refusal leaves the object intact and readable with a big enough limit.
      assert.deepEqual(await store.readAll(uri, 1000), bytes);
      // An empty object fits a limit of 0.
      const empty = await store.createOnce('reports/empty.json', Buffer.alloc(0));
      assert.deepEqual(await store.readAll(empty.uri, 0), Buffer.alloc(0));
    }));

    it('keyOf inverts uriFor and refuses URIs outside the root', () => withStore(async (store) => {
      for (const key of ['a', 'runs/r1/output.bin', 'team-a/blobs/sha256/00ff', 'with space/ünïcødé/#1%.json']) {
        assert.equal(store.keyOf(store.uriFor(key)), key);
      }
      const foreign = store.root.startsWith('gs://') ? 'gs://some-other-bucket/x' : 'file:///etc/passwd';
      for (const uri of [foreign, store.root, `${store.root}-sibling/x`, 'https://example.com/x']) {
        assert.throws(() => store.keyOf(uri), Error, `keyOf(${uri})`);
      }
    }));

    it('createOnce refuses to overwrite and leaves the content unchanged', () => withStore(async (store) => {
      const key = 'configurations/run-a.json';
      const original = Buffer.from('{"params":{"lr":0.1}}');
      const stored = await store.createOnce(key, original);
      assert.equal(stored.uri, store.uriFor(key));
      assert.equal(stored.digest, `sha256:${sha256(original)}`);
      assert.equal(stored.size, original.length);
      await assert.rejects(store.createOnce(key, Buffer.from('{"params":{"lr":0.9}}')), (err: unknown) => {
        assert.ok(err instanceof ObjectExistsError, `expected ObjectExistsError, got ${String(err)}`);
        assert.equal(err.uri, store.uriFor(key));
        return true;
      });
      // Same bytes again is still a second write: refused too.
      await assert.rejects(store.createOnce(key, original), ObjectExistsError);
      assert.deepEqual(await store.readAll(stored.uri, anySize), original);
    }));

    it('concurrent createOnce of one key by 20 writers: exactly one wins', () => withStore(async (store) => {
      const key = 'configurations/contended.json';
      const payloads = Array.from({ length: 20 }, (_, i) => Buffer.from(`writer ${i} ${randomBytes(2000).toString('hex')}`));
      const results = await Promise.allSettled(payloads.map((data) => store.createOnce(key, data)));
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
      const losers = results.filter((r) => r.status === 'rejected');
      assert.equal(losers.length, 19);
      for (const r of losers) {
        assert.ok(r.reason instanceof ObjectExistsError, `loser failed with ${String(r.reason)}`);
        assert.equal(r.reason.name, 'ObjectExistsError');
      }
      // The stored bytes are the winner's, whole (no loser's write mixed in).
      const winner = winners[0] ?? -1;
      assert.deepEqual(await store.readAll(store.uriFor(key), anySize), payloads[winner]);
    }));

    it('exists tells present from absent objects', () => withStore(async (store) => {
      const { uri } = await store.createOnce('a/present', Buffer.from('x'));
      assert.equal(await store.exists(uri), true);
      assert.equal(await store.exists(store.uriFor('a/absent')), false);
      assert.equal(await store.exists(store.uriFor('a')), false, 'a "directory" is not an object');
    }));

    it('list returns sorted keys under a prefix and nothing else', () => withStore(async (store) => {
      const keys = ['runs/b/2', 'runs/a/1', 'runs/a/0', 'runsx/other', 'models/m', 'runs/ab/3'];
      for (const key of keys) await store.createOnce(key, Buffer.from(key));
      assert.deepEqual(await store.list('runs/'), ['runs/a/0', 'runs/a/1', 'runs/ab/3', 'runs/b/2']);
      assert.deepEqual(await store.list('runs/a/'), ['runs/a/0', 'runs/a/1']);
      // Prefixes are plain string prefixes, as in GCS.
      assert.deepEqual(await store.list('runs/a'), ['runs/a/0', 'runs/a/1', 'runs/ab/3']);
      assert.deepEqual(await store.list('nothing/'), []);
      assert.deepEqual(await store.list(''), [...keys].sort());
    }));

    it('delete removes an object; deleting a missing one is fine', () => withStore(async (store) => {
      const { uri } = await store.createOnce('cache/step-1', Buffer.from('old'));
      await store.delete(uri);
      assert.equal(await store.exists(uri), false);
      await store.delete(uri);
      await store.delete(store.uriFor('cache/never-written'));
      // The key is free again (cache invalidation rewrites it).
      await store.createOnce('cache/step-1', Buffer.from('new'));
      assert.deepEqual(await store.readAll(uri, anySize), Buffer.from('new'));
    }));

    it('read and readAll of a missing object throw ObjectNotFoundError', () => withStore(async (store) => {
      const uri = store.uriFor('missing/object');
      await assert.rejects(store.read(uri), (err: unknown) => err instanceof ObjectNotFoundError && err.uri === uri);
      await assert.rejects(store.readAll(uri, anySize), (err: unknown) => err instanceof ObjectNotFoundError && err.uri === uri);
    }));

    it('refuses keys that escape the root and URIs from elsewhere', () => withStore(async (store) => {
      for (const key of ['../outside', 'a/../../outside', '/etc/passwd', 'a//b', './a', '', 'a\\b']) {
        assert.throws(() => store.uriFor(key), /invalid artifact key/, `uriFor(${JSON.stringify(key)})`);
        await assert.rejects(store.createOnce(key, Buffer.from('x')), /invalid artifact key/, `createOnce(${JSON.stringify(key)})`);
      }
      await assert.rejects(store.list('../'), /invalid artifact key prefix/);
      const foreign = store.root.startsWith('gs://') ? 'gs://some-other-bucket/x' : 'file:///etc/passwd';
      await assert.rejects(store.readAll(foreign, anySize), /does not name an object under/);
    }));

    it('a 20 MiB streamed blob round-trips with the right digest', { timeout: 120_000 }, () => withStore(async (store) => {
      const size = 20 * 1024 * 1024;
      const expected = createHash('sha256');
      // Generated on the fly (64 KiB at a time) and hashed as it goes: never held in memory.
      const source = Readable.from((function* () {
        for (let sent = 0; sent < size; sent += 65536) {
          const chunk = randomBytes(Math.min(65536, size - sent));
          expected.update(chunk);
          yield chunk;
        }
      })());
      const stored = await store.putBlob('team-a', source);
      const hex = expected.digest('hex');
      assert.equal(stored.digest, `sha256:${hex}`);
      assert.equal(stored.size, size);
      const actual = createHash('sha256');
      let readBytes = 0;
      for await (const chunk of await store.read(stored.uri)) {
        const bytes = chunk as Buffer;
        actual.update(bytes);
        readBytes += bytes.length;
      }
      assert.equal(readBytes, size);
      assert.equal(actual.digest('hex'), hex);
      // Nothing but the blob is visible (temporary uploads are never listed).
      assert.deepEqual(await store.list(''), [`team-a/blobs/sha256/${hex}`]);
    }));
  });
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
