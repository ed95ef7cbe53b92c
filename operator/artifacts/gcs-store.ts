// The gs:// artifact store: objects live in a Google Cloud Storage bucket under an optional
// prefix, written through @google-cloud/storage. Immutability comes from GCS preconditions
// (ifGenerationMatch: 0 = "only if absent"); tests run it against fake-gcs-server.
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket, DeleteFileOptions, File, PreconditionOptions, StorageOptions } from '@google-cloud/storage';
import { checkKey, checkPrefix, tmpDirName } from './file-store.ts';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, blobKey, collectAtMost, readHashedHead } from './store.ts';
import type { ArtifactStore, Grant, ObjectGrants, StoredObject } from './store.ts';

export interface GcsArtifactStoreOptions {
  /**
   * Another JSON API endpoint, e.g. fake-gcs-server's `http://127.0.0.1:4443`. The library
   * sends no credentials to a custom endpoint, so an emulator needs none.
   */
  apiEndpoint?: string;
  /** Only needed by calls that create buckets; object calls work without it. */
  projectId?: string;
  /**
   * Chunk size of resumable uploads (a multiple of 256 KiB; default 16 MiB). The library holds
   * one chunk in memory so it can resend it after a transient failure. 0 sends the whole
   * stream in one request: less memory, but a connection lost mid-way fails the putBlob.
   */
  uploadChunkBytes?: number;
  /**
   * Hand step Pods V4 signed URLs (`grants`), so they hold no credential. Signing needs a
   * service account key (GOOGLE_APPLICATION_CREDENTIALS) or, with workload identity, the
   * iam.serviceAccounts.signBlob permission on the operator's own account.
   */
  signedUrls?: boolean;
}

/** The longest a V4 signed URL may live (GCS refuses more). */
const maxSignedUrlMs = 7 * 24 * 3600 * 1000;
/** Sent with (and signed into) a create-once PUT: only if nothing is at the name. */
const createOnceHeaders = { 'x-goog-if-generation-match': '0' };

/**
 * Blobs up to this size are buffered, hashed and uploaded in one request straight to their
 * final name; larger ones stream through a resumable upload to a temporary object.
 */
const resumableThresholdBytes = 8 * 1024 * 1024;
const defaultUploadChunkBytes = 16 * 1024 * 1024;
/** Custom metadata key with a per-call id, to recognise our own write behind a retried 412. */
const writeIdKey = 'ferry-write-id';
const contentType = 'application/octet-stream';

export class GcsArtifactStore implements ArtifactStore, ObjectGrants {
  readonly root: string;
  readonly grants?: ObjectGrants;
  readonly bucketName: string;
  /** Object-name prefix without leading or trailing slashes; '' for the bucket root. */
  readonly prefix: string;
  private readonly storageOptions: StorageOptions;
  private readonly uploadChunkBytes: number;
  private bucketPromise: Promise<Bucket> | undefined;

  /**
   * `rootUri` is `gs://bucket` or `gs://bucket/prefix`. Credentials come from Application
   * Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity, gcloud) on the
   * first request; constructing the store does no I/O.
   */
  constructor(rootUri: string, options: GcsArtifactStoreOptions = {}) {
    const { bucket, prefix } = parseGcsRoot(rootUri);
    this.bucketName = bucket;
    this.prefix = prefix;
    this.root = prefix === '' ? `gs://${bucket}` : `gs://${bucket}/${prefix}`;
    const chunk = options.uploadChunkBytes ?? defaultUploadChunkBytes;
    if (!Number.isInteger(chunk) || chunk < 0 || chunk % (256 * 1024) !== 0) {
      throw new Error(`${this.root}: uploadChunkBytes must be 0 or a multiple of 256 KiB, got ${chunk}`);
    }
    this.uploadChunkBytes = chunk;
    if (options.signedUrls) this.grants = this;
    this.storageOptions = {
      ...(options.apiEndpoint !== undefined ? { apiEndpoint: options.apiEndpoint } : {}),
      ...(options.projectId !== undefined ? { projectId: options.projectId } : {}),
    };
  }

  /**
   * The client library is loaded on first use: it adds ~20 MiB of RSS, which a process that
   * only ever opens a file:// store (the default install, most step agents) need not pay.
   */
  private bucket(): Promise<Bucket> {
    this.bucketPromise ??= import('@google-cloud/storage').then(({ IdempotencyStrategy, Storage }) => new Storage({
      ...this.storageOptions,
      retryOptions: {
        autoRetry: true,
        maxRetries: 5,
        // NOTE: every write and delete below carries an ifGenerationMatch precondition, so
        // RetryConditional retries all of them, and a retry can never overwrite or delete an
        // object someone else wrote. Calls without one would make the library switch autoRetry
        // off on the shared Storage object while they run, for every other call too.
        idempotencyStrategy: IdempotencyStrategy.RetryConditional,
      },
    }).bucket(this.bucketName));
    return this.bucketPromise;
  }

  uriFor(key: string): string {
    checkKey(key, this.root);
    return `${this.root}/${key}`;
  }

  async readGrant(uri: string, expiresAt: Date): Promise<Grant> {
    const file = (await this.bucket()).file(this.nameOf(uri));
    return { url: await this.sign(file, 'read', expiresAt, {}, `readGrant ${uri}`) };
  }

  async createGrant(key: string, expiresAt: Date): Promise<Grant> {
    const file = await this.fileFor(key);
    return { url: await this.sign(file, 'write', expiresAt, createOnceHeaders, `createGrant ${this.uriFor(key)}`), headers: { ...createOnceHeaders } };
  }

  private async sign(file: File, action: 'read' | 'write', expiresAt: Date, extensionHeaders: Record<string, string>, context: string): Promise<string> {
    if (expiresAt.getTime() - Date.now() > maxSignedUrlMs) throw new Error(`${context}: a V4 signed URL lives at most 7 days; the step's timeout is longer`);
    try {
      const [url] = await file.getSignedUrl({ version: 'v4', action, expires: expiresAt, extensionHeaders });
      return url;
    } catch (err) {
      throw wrap(err, `${context}: signing a URL (needs a service account key, or signBlob on the operator's account)`);
    }
  }

  keyOf(uri: string): string {
    const name = this.nameOf(uri);
    return this.prefix === '' ? name : name.slice(this.prefix.length + 1);
  }

  async putBlob(namespace: string, source: Readable): Promise<StoredObject> {
    checkKey(namespace, this.root);
    try {
      const read = await readHashedHead(source, resumableThresholdBytes);
      if (read.ended) {
        const key = blobKey(namespace, read.hex);
        await this.writeIfAbsent(await this.fileFor(key), read.bytes, {}, `putBlob ${this.uriFor(key)}`);
        return { uri: this.uriFor(key), digest: `sha256:${read.hex}`, size: read.size };
      }
      return await this.putLargeBlob(namespace, read.all, read.hex, read.size);
    } catch (err) {
      source.destroy(); // stop the producer; a half-read source is of no use to anyone
      throw err;
    }
  }

  /**
   * Streams to `.ferry-tmp/<uuid>` (the name is unknown until the last byte is hashed), copies
   * that to `<namespace>/blobs/sha256/<hex>` only if absent, and deletes the temporary object.
   */
  private async putLargeBlob(namespace: string, data: AsyncIterable<Uint8Array>, hexOf: () => string, size: () => number): Promise<StoredObject> {
    const tmpUri = this.uriForTmp(randomUUID());
    const tmp = (await this.bucket()).file(this.nameOf(tmpUri, true));
    try {
      await pipeline(data, tmp.createWriteStream({
        resumable: true,
        ...(this.uploadChunkBytes > 0 ? { chunkSize: this.uploadChunkBytes } : {}),
        // The name is fresh, so "only if absent" always holds; it makes the upload retryable.
        preconditionOpts: { ifGenerationMatch: 0 },
        metadata: { contentType },
      }));
    } catch (err) {
      throw wrap(err, `putBlob: uploading ${tmpUri}`);
    }
    const hex = hexOf();
    const key = blobKey(namespace, hex);
    const uri = this.uriFor(key);
    try {
      // The usual repeat (same outputs again) needs no copy. The precondition still decides
      // when two writers race (real GCS answers 412; fake-gcs-server ignores preconditions on
      // copies and overwrites with the same bytes).
      const target = await this.fileFor(key);
      if (!(await this.exists(uri))) await tmp.copy(target, { preconditionOpts: { ifGenerationMatch: 0 } });
    } catch (err) {
      // 412: the blob is there already, and by construction holds the same bytes.
      if (httpStatus(err) !== 412) throw wrap(err, `putBlob ${uri}: copying from ${tmpUri}`);
    } finally {
      await this.deleteTmp(tmp);
    }
    return { uri, digest: `sha256:${hex}`, size: size() };
  }

  async createOnce(key: string, data: Uint8Array): Promise<StoredObject> {
    const uri = this.uriFor(key);
    const file = await this.fileFor(key);
    const writeId = randomUUID();
    const created = await this.writeIfAbsent(file, data, { [writeIdKey]: writeId }, `createOnce ${uri}`);
    if (!created) {
      // A retried request whose first attempt succeeded (response lost) also ends in 412:
      // the object carrying our write id is ours, anything else is someone else's.
      const existing = await file.getMetadata().then(([metadata]) => metadata, () => undefined);
      if (existing?.metadata?.[writeIdKey] !== writeId) throw new ObjectExistsError(uri);
    }
    const hex = createHash('sha256').update(data).digest('hex');
    return { uri, digest: `sha256:${hex}`, size: data.byteLength };
  }

  async read(uri: string): Promise<Readable> {
    const name = this.nameOf(uri);
    const generation = await this.generationOf(name, `read ${uri}`);
    if (generation === undefined) throw new ObjectNotFoundError(uri);
    // Pinning the generation we just saw makes a concurrent delete + rewrite visible as an
    // error instead of a silent switch to other bytes.
    return (await this.bucket()).file(name, { generation }).createReadStream();
  }

  async readAll(uri: string, maxBytes: number): Promise<Buffer> {
    const name = this.nameOf(uri);
    try {
      const [metadata] = await (await this.bucket()).file(name).getMetadata();
      if (Number(metadata.size ?? 0) > maxBytes) throw new ObjectTooLargeError(uri, maxBytes);
      if (metadata.generation === undefined) throw new Error(`gs://${this.bucketName}/${name} has no generation in its metadata`);
      const stream = (await this.bucket()).file(name, { generation: metadata.generation }).createReadStream();
      return await collectAtMost(stream, maxBytes, uri, () => stream.destroy());
    } catch (err) {
      if (httpStatus(err) === 404) throw new ObjectNotFoundError(uri);
      throw wrap(err, `readAll ${uri}`);
    }
  }

  async exists(uri: string): Promise<boolean> {
    const name = this.nameOf(uri);
    try {
      const [exists] = await (await this.bucket()).file(name).exists();
      return exists;
    } catch (err) {
      throw wrap(err, `exists ${uri}`);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix, this.root);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let files: File[];
    try {
      [files] = await (await this.bucket()).getFiles({ prefix: `${base}${prefix}`, autoPaginate: true });
    } catch (err) {
      throw wrap(err, `list ${this.root} prefix ${JSON.stringify(prefix)}`);
    }
    return files
      .map((f) => f.name.slice(base.length))
      // Folder placeholders ("x/") and in-flight uploads are not objects of this store.
      .filter((key) => !key.endsWith('/') && !key.startsWith(`${tmpDirName}/`))
      .sort();
  }

  async delete(uri: string): Promise<void> {
    const name = this.nameOf(uri);
    // Delete the generation we just saw, with ifGenerationMatch too: the call stays retryable
    // (see the constructor) and never removes an object written after our look. A 404 or 412
    // means it changed in between, so look again.
    for (let attempt = 1; ; attempt++) {
      const generation = await this.generationOf(name, `delete ${uri}`);
      if (generation === undefined) return;
      try {
        await (await this.bucket()).file(name, { generation }).delete(ifGeneration(generation));
        return;
      } catch (err) {
        const status = httpStatus(err);
        if ((status === 404 || status === 412) && attempt < 3) continue;
        throw wrap(err, `delete ${uri}`);
      }
    }
  }

  /** Uploads `data` in one request only if nothing is at `file`; false if something was. */
  private async writeIfAbsent(file: File, data: Uint8Array, custom: Record<string, string>, context: string): Promise<boolean> {
    try {
      await file.save(data, {
        resumable: false,
        preconditionOpts: { ifGenerationMatch: 0 },
        metadata: { contentType, metadata: custom },
      });
      return true;
    } catch (err) {
      if (httpStatus(err) === 412) return false;
      throw wrap(err, context);
    }
  }

  private async generationOf(name: string, context: string): Promise<string | number | undefined> {
    try {
      const [metadata] = await (await this.bucket()).file(name).getMetadata();
      if (metadata.generation === undefined) throw new Error(`gs://${this.bucketName}/${name} has no generation in its metadata`);
      return metadata.generation;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw wrap(err, context);
    }
  }

  private async deleteTmp(tmp: File): Promise<void> {
    // Best effort: a leftover .ferry-tmp/ object costs storage, not correctness (a bucket
    // lifecycle rule on the prefix can sweep them).
    const generation = tmp.metadata.generation;
    if (generation === undefined) return;
    await tmp.bucket.file(tmp.name, { generation }).delete({ ...ifGeneration(generation), ignoreNotFound: true }).catch(() => undefined);
  }

  private async fileFor(key: string): Promise<File> {
    checkKey(key, this.root);
    return (await this.bucket()).file(this.prefix === '' ? key : `${this.prefix}/${key}`);
  }

  private uriForTmp(id: string): string {
    return `${this.root}/${tmpDirName}/${id}`;
  }

  /** The object name of a URI under this root; throws for anything outside it. */
  private nameOf(uri: string, allowTmp = false): string {
    const base = `${this.root}/`;
    if (!uri.startsWith(base)) {
      throw new Error(`${uri} does not name an object under the artifact store ${this.root}`);
    }
    const key = uri.slice(base.length);
    if (!(allowTmp && key.startsWith(`${tmpDirName}/`))) checkKey(key, this.root);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }
}

/** `gs://bucket[/prefix]` → bucket and prefix (no leading/trailing slashes), or a clear error. */
export function parseGcsRoot(rootUri: string): { bucket: string; prefix: string } {
  const match = /^gs:\/\/([^/?#]+)(?:\/(.*))?$/.exec(rootUri);
  if (match === null) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must be gs://bucket or gs://bucket/prefix`);
  }
  const bucket = match[1] ?? '';
  // A loose form of https://cloud.google.com/storage/docs/buckets#naming; GCS has the last word.
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket)) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)}: ${JSON.stringify(bucket)} is not a valid bucket name (lower-case letters, digits, '-', '_', '.'; 3-222 characters)`);
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '') {
    try {
      checkKey(prefix, rootUri);
    } catch (err) {
      throw new Error(`artifact store URI ${JSON.stringify(rootUri)} has an invalid prefix: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { bucket, prefix };
}

function ifGeneration(generation: string | number): DeleteFileOptions {
  // DeleteFileOptions does not declare preconditions, but the library sends the remaining
  // options as query parameters and checks ifGenerationMatch to decide on retries.
  const options: DeleteFileOptions & PreconditionOptions = { ifGenerationMatch: generation };
  return options;
}


/** The HTTP status behind a library error (ApiError.code, or a Gaxios response). */
function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const value of [e.code, e.status, e.response?.status]) if (typeof value === 'number') return value;
  return undefined;
}

function wrap(err: unknown, context: string): Error {
  if (err instanceof ObjectExistsError || err instanceof ObjectNotFoundError || err instanceof ObjectTooLargeError) return err;
  const status = httpStatus(err);
  const message = err instanceof Error ? err.message : String(err);
  return new Error(`${context}: ${status !== undefined ? `HTTP ${status}: ` : ''}${message}`, { cause: err });
}
