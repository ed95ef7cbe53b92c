// The s3:// artifact store: objects live in an S3 (or S3-compatible) bucket under an optional
// prefix, written through @aws-sdk/client-s3. Immutability comes from conditional writes
// (If-None-Match: * = "only if absent"); step Pods get presigned URLs instead of credentials.
// Tests run it against a real SeaweedFS S3 gateway (test/harness/s3.ts).
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import type { Clock } from '../runtime/clock.ts';
import { checkKey, checkPrefix, tmpDirName } from './file-store.ts';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, blobKey, collectAtMost, readHashedHead } from './store.ts';
import type { ArtifactStore, Grant, ObjectGrants, StoredObject } from './store.ts';

export interface S3ArtifactStoreOptions {
  /**
   * Another S3 endpoint than AWS's, e.g. `http://127.0.0.1:8333` (SeaweedFS, MinIO, Ceph RGW).
   * Presigned URLs name this host too, so step Pods must be able to reach it.
   */
  endpoint?: string;
  /** Default: the SDK's chain (AWS_REGION, the config file); `us-east-1` with a custom endpoint. */
  region?: string;
  /** `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`; most S3-compatible servers need it. */
  forcePathStyle?: boolean;
  /**
   * Part size of the multipart upload of a large blob (at least 5 MiB; default 16 MiB). Two
   * parts are in memory at a time, and S3 allows 10,000 parts: 16 MiB parts reach 156 GiB.
   */
  uploadPartBytes?: number;
  /** "now" of presigned URLs; the system clock by default. */
  clock?: Clock;
  /**
   * Blobs up to this size are copied into place by one CopyObject, larger ones by a multipart
   * copy. S3's limit (5 GiB) by default; tests lower it to exercise the multipart copy.
   */
  maxSingleCopyBytes?: number;
  /** Part size of a multipart copy (5 MiB to 5 GiB; default 1 GiB). */
  copyPartBytes?: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/**
 * Blobs up to this size are buffered, hashed and written in one request straight to their
 * final name; larger ones stream through a multipart upload to a temporary object.
 */
const singleRequestThresholdBytes = 8 * MiB;
const defaultUploadPartBytes = 16 * MiB;
const minPartBytes = 5 * MiB;
const maxParts = 10_000;
const defaultCopyPartBytes = 1 * GiB;
/** S3's limit for CopyObject and for one part. */
const maxCopyBytes = 5 * GiB;
/** SigV4's limit for a presigned URL's lifetime. */
const maxPresignSeconds = 7 * 24 * 3600;
/** User metadata key with a per-call id, to recognise our own write behind a retried 412. */
const writeIdKey = 'ferry-write-id';
const contentType = 'application/octet-stream';
/** How often a write is tried again after S3's 409 ConditionalRequestConflict. */
const conflictAttempts = 5;

type Sdk = typeof import('@aws-sdk/client-s3');
type GetSignedUrl = typeof import('@aws-sdk/s3-request-presigner').getSignedUrl;
type PresignOptions = NonNullable<Parameters<GetSignedUrl>[2]>;

interface Clients {
  sdk: Sdk;
  client: S3Client;
  /** Signs URLs; see presigner(). */
  presigner: S3Client;
}

export class S3ArtifactStore implements ArtifactStore, ObjectGrants {
  readonly root: string;
  readonly bucketName: string;
  /** Object-key prefix without leading or trailing slashes; '' for the bucket root. */
  readonly prefix: string;
  readonly grants: ObjectGrants = this;
  private readonly clientConfig: S3ClientConfig;
  private readonly uploadPartBytes: number;
  private readonly maxSingleCopyBytes: number;
  private readonly copyPartBytes: number;
  private readonly clock: Clock;
  private clientsPromise: Promise<Clients> | undefined;

  /**
   * `rootUri` is `s3://bucket` or `s3://bucket/prefix`. Credentials come from the SDK's default
   * provider chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE +
   * AWS_ROLE_ARN as IRSA sets them, profiles, container and instance metadata) on the first
   * request; constructing the store does no I/O.
   */
  constructor(rootUri: string, options: S3ArtifactStoreOptions = {}) {
    const { bucket, prefix } = parseS3Root(rootUri);
    this.bucketName = bucket;
    this.prefix = prefix;
    this.root = prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}`;
    this.uploadPartBytes = checkedSize(options.uploadPartBytes ?? defaultUploadPartBytes, minPartBytes, maxCopyBytes, 'uploadPartBytes', this.root);
    this.copyPartBytes = checkedSize(options.copyPartBytes ?? defaultCopyPartBytes, minPartBytes, maxCopyBytes, 'copyPartBytes', this.root);
    this.maxSingleCopyBytes = checkedSize(options.maxSingleCopyBytes ?? maxCopyBytes, 0, maxCopyBytes, 'maxSingleCopyBytes', this.root);
    this.clock = options.clock ?? { now: () => new Date() };
    if (options.endpoint !== undefined) {
      let url: URL;
      try {
        url = new URL(options.endpoint);
      } catch (err) {
        throw new Error(`${this.root}: S3 endpoint ${JSON.stringify(options.endpoint)} is not a URL: ${errorMessage(err)}`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new Error(`${this.root}: S3 endpoint ${JSON.stringify(options.endpoint)} must be http:// or https://`);
      }
    }
    const region = options.region ?? (options.endpoint !== undefined ? 'us-east-1' : undefined);
    this.clientConfig = {
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      ...(region !== undefined ? { region } : {}),
      ...(options.forcePathStyle !== undefined ? { forcePathStyle: options.forcePathStyle } : {}),
    };
  }

  /**
   * The SDK is loaded on first use: it adds several MiB of RSS, which a process that only ever
   * opens a file:// store (the default install, most step agents) need not pay.
   */
  private clients(): Promise<Clients> {
    this.clientsPromise ??= import('@aws-sdk/client-s3').then((sdk) => ({
      sdk,
      client: new sdk.S3Client(this.clientConfig),
      // NOTE: with the SDK's default (checksums "when supported"), a presigned PUT carries
      // the CRC32 of an empty body in its query, and S3 then refuses every real upload.
      presigner: new sdk.S3Client({ ...this.clientConfig, requestChecksumCalculation: 'WHEN_REQUIRED' }),
    }));
    return this.clientsPromise;
  }

  uriFor(key: string): string {
    checkKey(key, this.root);
    return `${this.root}/${key}`;
  }

  keyOf(uri: string): string {
    const name = this.nameOf(uri);
    return this.prefix === '' ? name : name.slice(this.prefix.length + 1);
  }

  async putBlob(namespace: string, source: Readable): Promise<StoredObject> {
    checkKey(namespace, this.root);
    try {
      const read = await readHashedHead(source, singleRequestThresholdBytes);
      if (read.ended) {
        const uri = this.uriFor(blobKey(namespace, read.hex));
        // false: the blob is there already, and by construction holds the same bytes.
        await this.putIfAbsent(this.nameOf(uri), read.bytes, {}, `putBlob ${uri}`);
        return { uri, digest: `sha256:${read.hex}`, size: read.size };
      }
      return await this.putLargeBlob(namespace, Readable.from(read.all, { objectMode: false }), read.hex, read.size);
    } catch (err) {
      source.destroy(); // stop the producer; a half-read source is of no use to anyone
      throw err;
    }
  }

  /**
   * Streams to `.ferry-tmp/<uuid>` by a multipart upload (the name is unknown until the last
   * byte is hashed), copies that to `<namespace>/blobs/sha256/<hex>` only if absent, and
   * deletes the temporary object.
   */
  private async putLargeBlob(namespace: string, data: Readable, hexOf: () => string, size: () => number): Promise<StoredObject> {
    const tmpName = this.nameOfTmp(randomUUID());
    const tmpUri = `s3://${this.bucketName}/${tmpName}`;
    const { client } = await this.clients();
    try {
      const { Upload } = await import('@aws-sdk/lib-storage');
      await new Upload({
        client,
        params: { Bucket: this.bucketName, Key: tmpName, Body: data, ContentType: contentType },
        partSize: this.uploadPartBytes,
        queueSize: 2,
        // A failed upload is aborted, so its parts do not linger (and cost) in the bucket.
        leavePartsOnError: false,
      }).done();
    } catch (err) {
      await this.deleteQuietly(tmpName);
      throw wrap(err, `putBlob: uploading ${tmpUri}`);
    }
    const hex = hexOf();
    const uri = this.uriFor(blobKey(namespace, hex));
    try {
      // The usual repeat (same outputs again) needs no copy. The condition still decides when
      // two writers race; a server that ignored it would overwrite with the same bytes.
      if (!(await this.exists(uri))) await this.copyIfAbsent(tmpName, this.nameOf(uri), size(), `putBlob ${uri}: copying from ${tmpUri}`);
    } finally {
      await this.deleteQuietly(tmpName);
    }
    return { uri, digest: `sha256:${hex}`, size: size() };
  }

  async createOnce(key: string, data: Uint8Array): Promise<StoredObject> {
    const uri = this.uriFor(key);
    const name = this.nameOf(uri);
    const writeId = randomUUID();
    const created = await this.putIfAbsent(name, data, { [writeIdKey]: writeId }, `createOnce ${uri}`);
    if (!created) {
      // A retried request whose first attempt succeeded (response lost) also ends in 412:
      // the object carrying our write id is ours, anything else is someone else's.
      const existing = await this.head(name, `createOnce ${uri}`).catch(() => undefined);
      if (existing?.Metadata?.[writeIdKey] !== writeId) throw new ObjectExistsError(uri);
    }
    const hex = createHash('sha256').update(data).digest('hex');
    return { uri, digest: `sha256:${hex}`, size: data.byteLength };
  }

  async read(uri: string): Promise<Readable> {
    const name = this.nameOf(uri);
    const { sdk, client } = await this.clients();
    try {
      const res = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucketName, Key: name }));
      return bodyStream(res.Body, uri);
    } catch (err) {
      if (httpStatus(err) === 404) throw new ObjectNotFoundError(uri);
      throw wrap(err, `read ${uri}`);
    }
  }

  async readAll(uri: string, maxBytes: number): Promise<Buffer> {
    const name = this.nameOf(uri);
    const { sdk, client } = await this.clients();
    // A 412 means the object was replaced between the HEAD and the GET: look again.
    for (let attempt = 1; ; attempt++) {
      const head = await this.head(name, `readAll ${uri}`);
      if (head === undefined) throw new ObjectNotFoundError(uri);
      if ((head.ContentLength ?? 0) > maxBytes) throw new ObjectTooLargeError(uri, maxBytes);
      try {
        // Pinning the ETag we just saw makes a concurrent rewrite visible instead of
        // reading other bytes than the ones whose size was checked.
        const res = await client.send(new sdk.GetObjectCommand({
          Bucket: this.bucketName, Key: name, ...(head.ETag !== undefined ? { IfMatch: head.ETag } : {}),
        }));
        const body = bodyStream(res.Body, uri);
        return await collectAtMost(body, maxBytes, uri, () => body.destroy());
      } catch (err) {
        const status = httpStatus(err);
        if (status === 404) throw new ObjectNotFoundError(uri);
        if (status === 412 && attempt < 3) continue;
        throw wrap(err, `readAll ${uri}`);
      }
    }
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.head(this.nameOf(uri), `exists ${uri}`)) !== undefined;
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix, this.root);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    const { sdk, client } = await this.clients();
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await client.send(new sdk.ListObjectsV2Command({
          Bucket: this.bucketName, Prefix: `${base}${prefix}`, ...(token !== undefined ? { ContinuationToken: token } : {}),
        }));
        for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key.slice(base.length));
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (err) {
      throw wrap(err, `list ${this.root} prefix ${JSON.stringify(prefix)}`);
    }
    return keys
      // Folder placeholders ("x/") and in-flight uploads are not objects of this store.
      .filter((key) => !key.endsWith('/') && !key.startsWith(`${tmpDirName}/`))
      .sort();
  }

  async delete(uri: string): Promise<void> {
    const name = this.nameOf(uri);
    const { sdk, client } = await this.clients();
    try {
      // S3 answers 204 for a missing key too.
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucketName, Key: name }));
    } catch (err) {
      if (httpStatus(err) !== 404) throw wrap(err, `delete ${uri}`);
    }
  }

  /**
   * A presigned GET. NOTE: a URL signed with temporary credentials (IRSA, instance roles)
   * stops working when they expire, whatever its own expiry says.
   */
  async readGrant(uri: string, expiresAt: Date): Promise<Grant> {
    const name = this.nameOf(uri);
    const { sdk, presigner } = await this.clients();
    const url = await this.presign(expiresAt, `readGrant ${uri}`, (sign, options) =>
      sign(presigner, new sdk.GetObjectCommand({ Bucket: this.bucketName, Key: name }), options));
    return { url };
  }

  /** A presigned PUT that creates `key` once: If-None-Match is a signed header the Pod must send. */
  async createGrant(key: string, expiresAt: Date): Promise<Grant> {
    const uri = this.uriFor(key);
    const { sdk, presigner } = await this.clients();
    const url = await this.presign(expiresAt, `createGrant ${uri}`, (sign, options) =>
      sign(presigner, new sdk.PutObjectCommand({ Bucket: this.bucketName, Key: this.nameOf(uri), IfNoneMatch: '*' }), options));
    return { url, headers: { 'if-none-match': '*' }, lengthRequired: true };
  }

  /** Signs one request (`sign` builds it) so that it is valid until `expiresAt`. */
  private async presign(expiresAt: Date, context: string, sign: (getSignedUrl: GetSignedUrl, options: PresignOptions) => Promise<string>): Promise<string> {
    const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
    const now = this.clock.now().getTime();
    let seconds = Math.ceil((expiresAt.getTime() - now) / 1000);
    if (seconds > maxPresignSeconds) {
      throw new Error(`${context}: expiry ${expiresAt.toISOString()} is more than 7 days away, the longest an S3 presigned URL can live`);
    }
    // A URL must live at least a second; one already expired is signed in the past, so that it
    // still ends at `expiresAt` and the server refuses it as expired.
    let signingDate = new Date(now);
    if (seconds < 1) {
      seconds = 1;
      signingDate = new Date(expiresAt.getTime() - 1000);
    }
    try {
      return await sign(getSignedUrl, {
        expiresIn: seconds,
        signingDate,
        // Headers stay headers (signed, so the holder must send them), never query parameters.
        unhoistableHeaders: new Set(['if-none-match']),
      });
    } catch (err) {
      throw wrap(err, context);
    }
  }

  /** PutObject only if nothing is at `name`; false if something was (412). */
  private async putIfAbsent(name: string, data: Uint8Array, metadata: Record<string, string>, context: string): Promise<boolean> {
    const { sdk, client } = await this.clients();
    for (let attempt = 1; ; attempt++) {
      try {
        await client.send(new sdk.PutObjectCommand({
          Bucket: this.bucketName, Key: name, Body: data, ContentLength: data.byteLength,
          ContentType: contentType, Metadata: metadata, IfNoneMatch: '*',
        }));
        return true;
      } catch (err) {
        const status = httpStatus(err);
        if (status === 412) return false;
        // 409: another conditional write of the key is in flight; S3 asks us to try again.
        if (status === 409 && attempt < conflictAttempts) { await backoff(attempt); continue; }
        throw wrap(err, context);
      }
    }
  }

  /** Server-side copy to `target` only if absent; an existing target (412) is fine. */
  private async copyIfAbsent(source: string, target: string, size: number, context: string): Promise<void> {
    const { sdk, client } = await this.clients();
    const copySource = `${this.bucketName}/${source.split('/').map(encodeURIComponent).join('/')}`;
    for (let attempt = 1; ; attempt++) {
      try {
        if (size <= this.maxSingleCopyBytes) {
          await client.send(new sdk.CopyObjectCommand({ Bucket: this.bucketName, Key: target, CopySource: copySource, IfNoneMatch: '*' }));
        } else {
          await this.multipartCopy(copySource, target, size);
        }
        return;
      } catch (err) {
        const status = httpStatus(err);
        if (status === 412) return;
        if (status === 409 && attempt < conflictAttempts) { await backoff(attempt); continue; }
        throw wrap(err, context);
      }
    }
  }

  /** CopyObject stops at 5 GiB: larger objects are copied part by part (UploadPartCopy). */
  private async multipartCopy(copySource: string, target: string, size: number): Promise<void> {
    const { sdk, client } = await this.clients();
    // Parts grow past copyPartBytes only when 10,000 of them would not cover the object.
    const partBytes = Math.max(this.copyPartBytes, Math.ceil(size / maxParts));
    if (partBytes > maxCopyBytes) throw new Error(`${size} bytes is more than S3 can copy (10,000 parts of 5 GiB)`);
    const { UploadId } = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: this.bucketName, Key: target, ContentType: contentType }));
    if (UploadId === undefined) throw new Error(`CreateMultipartUpload of ${target} returned no UploadId`);
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      for (let start = 0, partNumber = 1; start < size; start += partBytes, partNumber++) {
        const end = Math.min(start + partBytes, size) - 1;
        const res = await client.send(new sdk.UploadPartCopyCommand({
          Bucket: this.bucketName, Key: target, UploadId, PartNumber: partNumber, CopySource: copySource, CopySourceRange: `bytes=${start}-${end}`,
        }));
        const etag = res.CopyPartResult?.ETag;
        if (etag === undefined) throw new Error(`UploadPartCopy of part ${partNumber} of ${target} returned no ETag`);
        parts.push({ ETag: etag, PartNumber: partNumber });
      }
      await client.send(new sdk.CompleteMultipartUploadCommand({
        Bucket: this.bucketName, Key: target, UploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*',
      }));
    } catch (err) {
      // Best effort: an upload left open costs storage until a lifecycle rule aborts it.
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucketName, Key: target, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  /** The object's HEAD, or undefined if it does not exist. */
  private async head(name: string, context: string): Promise<import('@aws-sdk/client-s3').HeadObjectCommandOutput | undefined> {
    const { sdk, client } = await this.clients();
    try {
      return await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucketName, Key: name }));
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw wrap(err, context);
    }
  }

  private async deleteQuietly(name: string): Promise<void> {
    // Best effort: a leftover .ferry-tmp/ object costs storage, not correctness (a bucket
    // lifecycle rule on the prefix can sweep them).
    const { sdk, client } = await this.clients();
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucketName, Key: name })).catch(() => undefined);
  }

  private nameOfTmp(id: string): string {
    return this.prefix === '' ? `${tmpDirName}/${id}` : `${this.prefix}/${tmpDirName}/${id}`;
  }

  /** The object key in the bucket of a URI under this root; throws for anything outside it. */
  private nameOf(uri: string): string {
    const base = `${this.root}/`;
    if (!uri.startsWith(base)) {
      throw new Error(`${uri} does not name an object under the artifact store ${this.root}`);
    }
    const key = uri.slice(base.length);
    checkKey(key, this.root);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }
}

/** `s3://bucket[/prefix]` → bucket and prefix (no leading/trailing slashes), or a clear error. */
export function parseS3Root(rootUri: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/?#]+)(?:\/(.*))?$/.exec(rootUri);
  if (match === null) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must be s3://bucket or s3://bucket/prefix`);
  }
  const bucket = match[1] ?? '';
  // https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html, loosely
  // (S3-compatible servers differ); the server has the last word.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)}: ${JSON.stringify(bucket)} is not a valid bucket name (lower-case letters, digits, '-', '.'; 3-63 characters)`);
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '') {
    try {
      checkKey(prefix, rootUri);
    } catch (err) {
      throw new Error(`artifact store URI ${JSON.stringify(rootUri)} has an invalid prefix: ${errorMessage(err)}`);
    }
  }
  return { bucket, prefix };
}

function checkedSize(value: number, min: number, max: number, name: string, root: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${root}: ${name} must be a whole number of bytes from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** The body of a GetObject as a Node stream (what the SDK's Node runtime returns). */
function bodyStream(body: unknown, uri: string): Readable {
  if (body instanceof Readable) return body;
  throw new Error(`read ${uri}: the S3 client returned a body that is not a Node.js stream`);
}

const backoff = (attempt: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt * (0.5 + Math.random())));


/** The HTTP status behind an SDK error ($metadata of a service exception). */
function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const status = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function wrap(err: unknown, context: string): Error {
  if (err instanceof ObjectExistsError || err instanceof ObjectNotFoundError || err instanceof ObjectTooLargeError) return err;
  const status = httpStatus(err);
  const code = err instanceof Error && err.name !== 'Error' ? `${err.name}: ` : '';
  return new Error(`${context}: ${status !== undefined ? `HTTP ${status} ` : ''}${code}${errorMessage(err)}`, { cause: err });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
