// Runs the ArtifactStore contract against FileArtifactStore in a temp dir, plus what only the
// file:// store promises: read-only objects, no leftover temp files, root URI checks.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { FileArtifactStore } from '../../operator/artifacts/file-store.ts';
import { openArtifactStore, parseStoreUri } from '../../operator/artifacts/open.ts';
import { ObjectExistsError, ObjectNotFoundError } from '../../operator/artifacts/store.ts';
import { describeArtifactStoreContract } from './artifact-store-contract.ts';

async function openTempStore(): Promise<{ store: FileArtifactStore; dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-file-store-'));
  // A root that does not exist yet: the store creates it on first write.
  const store = new FileArtifactStore(pathToFileURL(join(dir, 'artifacts')).href);
  return { store, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

describeArtifactStoreContract('file://', openTempStore);

describe('FileArtifactStore', () => {
  it('makes objects read-only and leaves no temp files behind', async () => {
    const { store, cleanup } = await openTempStore();
    try {
      const blob = await store.putBlob('team-a', Readable.from([Buffer.from('blob')]));
      const object = await store.createOnce('a/b', Buffer.from('object'));
      await assert.rejects(store.createOnce('a/b', Buffer.from('again')));
      for (const uri of [blob.uri, object.uri]) {
        assert.equal((await stat(store.pathOf(uri))).mode & 0o777, 0o444, uri);
      }
      assert.deepEqual(await readdir(join(store.rootDir, '.ferry-tmp')), []);
    } finally {
      await cleanup();
    }
  });

  it('a failing source leaves no object and no temp file', async () => {
    const { store, cleanup } = await openTempStore();
    try {
      const source = Readable.from((async function* () {
        yield Buffer.from('partial');
        throw new Error('source broke');
      })());
      await assert.rejects(store.putBlob('team-a', source), /source broke/);
      assert.deepEqual(await store.list(''), []);
      assert.deepEqual(await readdir(join(store.rootDir, '.ferry-tmp')), []);
    } finally {
      await cleanup();
    }
  });

  it('createOnceFrom streams a body in once and readWithSize gives its size', async () => {
    // The artifact server writes PUT bodies with createOnceFrom and sends readWithSize's size
    // as Content-Length, so both must agree with createOnce and the bytes on disk.
    const { store, cleanup } = await openTempStore();
    try {
      const bytes = Buffer.from('streamed object');
      const stored = await store.createOnceFrom('runs/r1/out', Readable.from(chunksOf(bytes, 4)));
      assert.deepEqual(stored, { uri: store.uriFor('runs/r1/out'), digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length });
      await assert.rejects(store.createOnceFrom('runs/r1/out', Readable.from([Buffer.from('again')])), ObjectExistsError);
      const { body, size } = await store.readWithSize(stored.uri);
      assert.equal(size, bytes.length);
      assert.deepEqual(Buffer.concat(await body.toArray()), bytes);
      await assert.rejects(store.readWithSize(store.uriFor('runs/r1')), ObjectNotFoundError, 'a directory is not an object');
      assert.deepEqual(await readdir(join(store.rootDir, '.ferry-tmp')), []);
    } finally {
      await cleanup();
    }
  });

  it('round-trips keys that need URI escaping', async () => {
    const { store, cleanup } = await openTempStore();
    try {
      const { uri } = await store.createOnce('runs/with space/#1%.json', Buffer.from('{}'));
      assert.match(uri, /with%20space\/%231%25\.json$/);
      assert.deepEqual(await store.readAll(uri, 2), Buffer.from('{}'));
      assert.deepEqual(await store.list('runs/'), ['runs/with space/#1%.json']);
    } finally {
      await cleanup();
    }
  });

  it('normalises the root URI and rejects non-absolute ones', () => {
    assert.equal(new FileArtifactStore('file:///var/lib/ferry/').root, 'file:///var/lib/ferry');
    assert.equal(new FileArtifactStore('file:///var/lib/ferry').uriFor('x/y'), 'file:///var/lib/ferry/x/y');
    for (const bad of ['file://relative/path', 'file:relative', 'file:///', 'file:///a/../b', 'file:///a?x=1']) {
      assert.throws(() => new FileArtifactStore(bad), /artifact store URI/, bad);
    }
  });
});

describe('openArtifactStore', () => {
  it('chooses the store by scheme', () => {
    assert.ok(openArtifactStore('file:///var/lib/ferry') instanceof FileArtifactStore);
    assert.equal(openArtifactStore('gs://ferry-bucket/some/prefix/').root, 'gs://ferry-bucket/some/prefix');
    assert.deepEqual(parseStoreUri('gs://ferry-bucket'), { scheme: 'gs', root: 'gs://ferry-bucket', bucket: 'ferry-bucket', prefix: '' });
    assert.deepEqual(parseStoreUri('file:///srv/a'), { scheme: 'file', root: 'file:///srv/a', path: '/srv/a' });
  });

  it('explains what it cannot open', () => {
    assert.throws(() => openArtifactStore('s3://Bad_Bucket/x'), /not a valid bucket name/);
    assert.throws(() => openArtifactStore('/var/lib/ferry'), /no scheme \(did you mean file:\/\/\/var\/lib\/ferry\?\)/);
    assert.throws(() => openArtifactStore('artifacts'), /relative paths are not accepted/);
    assert.throws(() => openArtifactStore('https://example.com/x'), /unsupported scheme https/);
    assert.throws(() => openArtifactStore('gs://Bad_Bucket/x'), /not a valid bucket name/);
    assert.throws(() => openArtifactStore('gs://bucket/a/../b'), /invalid prefix/);
  });
});

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}
