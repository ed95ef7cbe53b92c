// Runs the ArtifactStore contract against S3ArtifactStore on a real S3 server (SeaweedFS, started
// for this file); each test gets its own prefix in one bucket. Also checks what only the s3://
// store does: presigned URLs (read, create once, expiry), temporary upload objects are deleted,
// the multipart copy of large blobs, a bucket-root store.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { openArtifactStore } from '../../operator/artifacts/open.ts';
import { S3ArtifactStore, type S3ArtifactStoreOptions } from '../../operator/artifacts/s3-store.ts';
import { startS3, type S3Server } from '../harness/s3.ts';
import { describeArtifactStoreContract } from './artifact-store-contract.ts';

const bucket = 'ferry-contract';
let s3: S3Server | undefined;
// NOTE: the SDK's chain ends at the instance metadata service (a link-local address); a test
// must never reach for it, whatever the environment holds.
process.env.AWS_EC2_METADATA_DISABLED = 'true';

before(async () => {
  s3 = await startS3({ buckets: [bucket], log: (line) => process.stderr.write(`[s3] ${line}\n`) });
  // The store takes credentials from the SDK's default chain, as in a cluster: here the
  // environment (this test file runs in a process of its own).
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
});

after(async () => {
  await s3?.stop();
});

function server(): S3Server {
  if (s3 === undefined) throw new Error('the S3 server is not running (before() failed?)');
  return s3;
}

function storeAt(root: string, options: S3ArtifactStoreOptions = {}): S3ArtifactStore {
  return new S3ArtifactStore(root, { endpoint: server().endpoint, forcePathStyle: true, ...options });
}

let rawClient: S3Client | undefined;
/** Every object key in a bucket under `prefix`, seen directly rather than through the store. */
async function rawKeys(prefix: string, inBucket = bucket): Promise<string[]> {
  rawClient ??= server().client();
  const res = await rawClient.send(new ListObjectsV2Command({ Bucket: inBucket, Prefix: prefix }));
  return (res.Contents ?? []).flatMap((o) => (o.Key !== undefined ? [o.Key] : [])).sort();
}

const inAMinute = () => new Date(Date.now() + 60_000);
const aMinuteAgo = () => new Date(Date.now() - 60_000);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describeArtifactStoreContract('s3:// (SeaweedFS)', async () => ({
  store: storeAt(`s3://${bucket}/contract/${randomUUID()}`),
  // The server and its data go away in after(); nothing to clean per test.
  cleanup: async () => {},
}));

describe('S3ArtifactStore presigned URLs', () => {
  it('a read grant GETs the bytes, without credentials', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    const bytes = randomBytes(50_000);
    const { uri } = await store.createOnce('runs/r1/in.bin', bytes);
    const grant = await store.readGrant(uri, inAMinute());
    assert.equal(grant.headers, undefined);
    const res = await fetch(grant.url);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
  });

  it('a create grant PUTs once: a second PUT is refused with 412 and the first bytes stay', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    const key = 'runs/r1/step-a/1/report.json';
    const grant = await store.createGrant(key, inAMinute());
    assert.deepEqual(grant.headers, { 'if-none-match': '*' });
    const first = Buffer.from('{"accuracy":0.97}');
    const created = await fetch(grant.url, { method: 'PUT', headers: grant.headers, body: first });
    assert.equal(created.status, 200, await created.text());
    const again = await fetch(grant.url, { method: 'PUT', headers: grant.headers, body: Buffer.from('{"accuracy":0.1}') });
    assert.equal(again.status, 412, await again.text());
    assert.deepEqual(await store.readAll(store.uriFor(key), 1024), first);
    // If-None-Match is signed: a holder cannot drop it to overwrite.
    assert.ok(new URL(grant.url).searchParams.get('X-Amz-SignedHeaders')?.split(';').includes('if-none-match'), grant.url);
    const unconditional = await fetch(grant.url, { method: 'PUT', body: Buffer.from('overwrite') });
    assert.equal(unconditional.status, 403, await unconditional.text());
    assert.deepEqual(await store.readAll(store.uriFor(key), 1024), first);
  });

  it('a create grant under 20 concurrent PUTs creates the object once', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    const key = 'runs/r1/step-a/1/out.tar';
    const grant = await store.createGrant(key, inAMinute());
    const bodies = Array.from({ length: 20 }, (_, i) => Buffer.from(`writer ${i} ${randomBytes(1000).toString('hex')}`));
    const statuses = await Promise.all(bodies.map(async (body) => {
      const res = await fetch(grant.url, { method: 'PUT', headers: grant.headers, body });
      await res.body?.cancel();
      return res.status;
    }));
    const winners = statuses.flatMap((status, i) => (status === 200 ? [i] : []));
    assert.equal(winners.length, 1, `statuses: ${statuses.join(', ')}`);
    assert.ok(statuses.every((status) => status === 200 || status === 412), `statuses: ${statuses.join(', ')}`);
    assert.deepEqual(await store.readAll(store.uriFor(key), 1 << 20), bodies[winners[0] ?? -1]);
  });

  it('an expired URL is refused, for reading and for creating', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    const { uri } = await store.createOnce('in.bin', Buffer.from('secret'));
    const lateRead = await fetch((await store.readGrant(uri, aMinuteAgo())).url);
    assert.equal(lateRead.status, 403, await lateRead.text());
    const lateCreate = await store.createGrant('new.bin', aMinuteAgo());
    const res = await fetch(lateCreate.url, { method: 'PUT', headers: lateCreate.headers, body: Buffer.from('x') });
    assert.equal(res.status, 403, await res.text());
    assert.equal(await store.exists(store.uriFor('new.bin')), false);
  });

  it('a URL works until its expiry and is refused after it', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    const { uri } = await store.createOnce('in.bin', Buffer.from('soon gone'));
    const { url } = await store.readGrant(uri, new Date(Date.now() + 2000));
    const now = await fetch(url);
    assert.equal(now.status, 200, await now.text());
    await sleep(3500);
    const later = await fetch(url);
    assert.equal(later.status, 403, await later.text());
  });

  it('refuses an expiry beyond what S3 can sign (7 days)', async () => {
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`);
    await assert.rejects(store.createGrant('k', new Date(Date.now() + 8 * 24 * 3600 * 1000)), /more than 7 days away/);
  });

  it('uses the injected clock for expiry', async () => {
    // A clock an hour behind: a grant "until now" is still good for an hour by that clock.
    const store = storeAt(`s3://${bucket}/grants/${randomUUID()}`, { clock: { now: () => new Date(Date.now() - 3600_000) } });
    const { uri } = await store.createOnce('in.bin', Buffer.from('x'));
    const url = new URL((await store.readGrant(uri, new Date())).url);
    assert.equal(url.searchParams.get('X-Amz-Expires'), '3600');
  });
});

describe('S3ArtifactStore', () => {
  it('deletes the temporary object of a large (multipart) upload', async () => {
    const prefix = `tmp-check/${randomUUID()}`;
    const store = storeAt(`s3://${bucket}/${prefix}`);
    const bytes = randomBytes(9 * 1024 * 1024); // above the 8 MiB single-request threshold
    const first = await store.putBlob('team-a', Readable.from([bytes]));
    const second = await store.putBlob('team-a', Readable.from([bytes])); // already there: no copy
    assert.equal(second.uri, first.uri);
    assert.equal(first.digest, `sha256:${sha256(bytes)}`);
    assert.deepEqual(await rawKeys(`${prefix}/`), [`${prefix}/${store.keyOf(first.uri)}`]);
  });

  it('concurrent large putBlobs of the same bytes give one blob and leave no temporary object', { timeout: 120_000 }, async () => {
    const prefix = `large-race/${randomUUID()}`;
    const store = storeAt(`s3://${bucket}/${prefix}`);
    const bytes = randomBytes(9 * 1024 * 1024);
    // All may see the blob absent and copy: the conditional copy lets one win, the rest get 412.
    const results = await Promise.all(Array.from({ length: 4 }, () => store.putBlob('team-a', Readable.from([bytes]))));
    for (const result of results) assert.deepEqual(result, results[0]);
    assert.deepEqual(await rawKeys(`${prefix}/`), [`${prefix}/team-a/blobs/sha256/${sha256(bytes)}`]);
    assert.deepEqual(await store.readAll(results[0]?.uri ?? '', bytes.length), bytes);
  });

  it('copies a blob too large for one CopyObject part by part', { timeout: 120_000 }, async () => {
    const prefix = `multipart-copy/${randomUUID()}`;
    // Every large blob takes the multipart copy; 5 MiB parts (S3's smallest) make three of 12 MiB.
    const store = storeAt(`s3://${bucket}/${prefix}`, { maxSingleCopyBytes: 0, copyPartBytes: 5 * 1024 * 1024, uploadPartBytes: 5 * 1024 * 1024 });
    const bytes = randomBytes(12 * 1024 * 1024);
    const stored = await store.putBlob('team-a', Readable.from([bytes.subarray(0, 7_000_000), bytes.subarray(7_000_000)]));
    assert.equal(stored.digest, `sha256:${sha256(bytes)}`);
    assert.equal(stored.size, bytes.length);
    assert.deepEqual(await store.readAll(stored.uri, bytes.length), bytes);
    assert.deepEqual(await rawKeys(`${prefix}/`), [`${prefix}/${store.keyOf(stored.uri)}`]);
  });

  it('works at the bucket root', async () => {
    const rootBucket = `ferry-root-${randomUUID().slice(0, 8)}`;
    await server().createBucket(rootBucket);
    const store = storeAt(`s3://${rootBucket}`);
    const { uri } = await store.createOnce('a/b', Buffer.from('x'));
    assert.equal(uri, `s3://${rootBucket}/a/b`);
    assert.deepEqual(await store.list(''), ['a/b']);
    assert.deepEqual(await store.readAll(uri, 1), Buffer.from('x'));
    const blob = await store.putBlob('ns', Readable.from([randomBytes(9 * 1024 * 1024)]));
    assert.deepEqual(await store.list(''), ['a/b', store.keyOf(blob.uri)].sort());
    assert.deepEqual(await rawKeys('', rootBucket), ['a/b', store.keyOf(blob.uri)].sort());
  });

  it('refuses URIs under another prefix of the same bucket', async () => {
    const store = storeAt(`s3://${bucket}/one`);
    await assert.rejects(store.readAll(`s3://${bucket}/other/x`, 1024), /does not name an object under the artifact store s3:\/\/ferry-contract\/one/);
    await assert.rejects(store.readAll(`s3://${bucket}/one/.ferry-tmp/x`, 1024), /reserved/);
    await assert.rejects(store.readGrant(`s3://${bucket}/other/x`, inAMinute()), /does not name an object under/);
    await assert.rejects(store.createGrant('../x', inAMinute()), /invalid artifact key/);
  });

  it('reports a missing bucket with the URI, the operation and the status', async () => {
    const store = storeAt('s3://no-such-bucket/p');
    await assert.rejects(store.createOnce('k', Buffer.from('x')), /createOnce s3:\/\/no-such-bucket\/p\/k: HTTP 404/);
  });

  it('is what openArtifactStore gives for s3:// with the s3 options', async () => {
    const store = openArtifactStore(`s3://${bucket}/open/${randomUUID()}/`, { s3Endpoint: server().endpoint, s3ForcePathStyle: true, s3Region: 'us-east-1' });
    assert.ok(store instanceof S3ArtifactStore);
    assert.match(store.root, /^s3:\/\/ferry-contract\/open\/[0-9a-f-]+$/);
    const { uri } = await store.createOnce('k', Buffer.from('opened'));
    assert.deepEqual(await store.readAll(uri, 100), Buffer.from('opened'));
  });

  it('validates the root URI and options without any I/O', () => {
    assert.throws(() => new S3ArtifactStore('s3://Bad_Bucket/x'), /not a valid bucket name/);
    assert.throws(() => new S3ArtifactStore('s3://bucket/a/../b'), /invalid prefix/);
    assert.throws(() => new S3ArtifactStore('gs://bucket/x'), /must be s3:\/\/bucket/);
    assert.throws(() => new S3ArtifactStore('s3://bucket', { endpoint: 'ftp://host' }), /must be http:\/\/ or https:\/\//);
    assert.throws(() => new S3ArtifactStore('s3://bucket', { uploadPartBytes: 1024 }), /uploadPartBytes must be/);
    assert.equal(new S3ArtifactStore('s3://bucket/p/').root, 's3://bucket/p');
  });
});
