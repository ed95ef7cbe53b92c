// Runs the ArtifactStore contract against GcsArtifactStore on a fake-gcs-server started for this
// file; each test gets its own prefix in one bucket. Also checks what only the gs:// store does:
// temporary upload objects are deleted, a bucket-root store works, preconditions hold.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
import { GcsArtifactStore } from '../../operator/artifacts/gcs-store.ts';
import { startFakeGcs, type FakeGcs } from '../harness/fake-gcs.ts';
import { describeArtifactStoreContract } from './artifact-store-contract.ts';

const bucket = 'ferry-contract';
let gcs: FakeGcs | undefined;

before(async () => {
  gcs = await startFakeGcs({ buckets: [bucket] });
});

after(async () => {
  await gcs?.stop();
});

function endpoint(): string {
  if (gcs === undefined) throw new Error('fake-gcs-server is not running (before() failed?)');
  return gcs.endpoint;
}

/** Every object name in the bucket under `prefix`, seen directly rather than through the store. */
async function rawNames(prefix: string): Promise<string[]> {
  const [files] = await new Storage({ apiEndpoint: endpoint() }).bucket(bucket).getFiles({ prefix });
  return files.map((f) => f.name).sort();
}

describeArtifactStoreContract('gs:// (fake-gcs-server)', async () => {
  const prefix = `contract/${randomUUID()}`;
  const store = new GcsArtifactStore(`gs://${bucket}/${prefix}`, { apiEndpoint: endpoint() });
  return {
    store,
    // The emulator and its data go away in after(); nothing to clean per test.
    cleanup: async () => {},
  };
});

describe('GcsArtifactStore', () => {
  it('deletes the temporary object of a large (resumable) upload', async () => {
    const prefix = `tmp-check/${randomUUID()}`;
    const store = new GcsArtifactStore(`gs://${bucket}/${prefix}`, { apiEndpoint: endpoint() });
    const bytes = randomBytes(9 * 1024 * 1024); // above the 8 MiB single-request threshold
    const first = await store.putBlob('team-a', Readable.from([bytes]));
    const second = await store.putBlob('team-a', Readable.from([bytes])); // copy hits 412: already there
    assert.equal(second.uri, first.uri);
    assert.deepEqual(await rawNames(`${prefix}/`), [`${prefix}/${store.keyOf(first.uri)}`]);
  });

  it('works at the bucket root', async () => {
    const rootBucket = `ferry-root-${randomUUID().slice(0, 8)}`;
    await gcs?.createBucket(rootBucket);
    const store = new GcsArtifactStore(`gs://${rootBucket}`, { apiEndpoint: endpoint() });
    const { uri } = await store.createOnce('a/b', Buffer.from('x'));
    assert.equal(uri, `gs://${rootBucket}/a/b`);
    assert.deepEqual(await store.list(''), ['a/b']);
    assert.deepEqual(await store.readAll(uri, 1), Buffer.from('x'));
  });

  it('refuses URIs under another prefix of the same bucket', async () => {
    const store = new GcsArtifactStore(`gs://${bucket}/one`, { apiEndpoint: endpoint() });
    await assert.rejects(store.readAll(`gs://${bucket}/other/x`, 1024), /does not name an object under the artifact store gs:\/\/ferry-contract\/one/);
    await assert.rejects(store.readAll(`gs://${bucket}/one/.ferry-tmp/x`, 1024), /reserved/);
  });

  it('reports a missing bucket with the URI and operation', async () => {
    const store = new GcsArtifactStore('gs://no-such-bucket/p', { apiEndpoint: endpoint() });
    await assert.rejects(store.createOnce('k', Buffer.from('x')), /createOnce gs:\/\/no-such-bucket\/p\/k: HTTP 404/);
  });
});
