// The artifact store: where step outputs and frozen configurations live. One small interface,
// implementations chosen by URI (open.ts): file:///path (a mounted volume, the default),
// gs://bucket/prefix (Google Cloud Storage) and s3://bucket/prefix (S3 or an S3-compatible
// server). Objects are immutable once written.
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';

/** `sha256:<64 hex>` */
export type Digest = `sha256:${string}`;

export interface StoredObject {
  /** Absolute URI: file:///…/key, gs://bucket/prefix/key or s3://bucket/prefix/key */
  uri: string;
  digest: Digest;
  size: number;
}

/** A write-once object already exists (the store refused to overwrite it). */
export class ObjectExistsError extends Error {
  readonly uri: string;
  constructor(uri: string) {
    super(`${uri} already exists and is immutable`);
    this.name = 'ObjectExistsError';
    this.uri = uri;
  }
}

/** The object is larger than the caller is willing to read (checked before reading). */
export class ObjectTooLargeError extends Error {
  readonly uri: string;
  constructor(uri: string, limitBytes: number) {
    super(`${uri} is larger than the limit of ${limitBytes} bytes`);
    this.name = 'ObjectTooLargeError';
    this.uri = uri;
  }
}

/** The object does not exist. */
export class ObjectNotFoundError extends Error {
  readonly uri: string;
  constructor(uri: string) {
    super(`${uri} does not exist`);
    this.name = 'ObjectNotFoundError';
    this.uri = uri;
  }
}

/** One request a step Pod may make without holding any store credential: a URL and the headers to send. */
export interface Grant {
  url: string;
  headers?: Record<string, string>;
  /** The upload must say its length up front (S3 refuses a chunked PUT): the agent spools it to disk first. */
  lengthRequired?: boolean;
}

/**
 * A store that can hand out expiring, single-object access (signed URLs). A grant may be a
 * promise: S3 presigning resolves credentials and hashes asynchronously.
 */
export interface ObjectGrants {
  /** Read one object (GET) until `expiresAt`. */
  readGrant(uri: string, expiresAt: Date): Grant | Promise<Grant>;
  /** Create one object at `key`, once (PUT), until `expiresAt`. */
  createGrant(key: string, expiresAt: Date): Grant | Promise<Grant>;
}

export interface ArtifactStore {
  /** The store's root URI, e.g. file:///var/lib/ferry/artifacts or gs://bucket/prefix. */
  readonly root: string;

  /** Set when step Pods can be given signed URLs instead of credentials. */
  readonly grants?: ObjectGrants;

  /** The URI of a key (a relative path with / separators) under the root. */
  uriFor(key: string): string;

  /** The key of a URI under the root; throws for a URI outside it. */
  keyOf(uri: string): string;

  /**
   * Streams `source` into a content-addressed blob of one namespace, `<namespace>/blobs/sha256/<hex>`,
   * hashing while it uploads (bounded memory, no whole-file buffering). Writing content that is
   * already stored returns the existing object.
   */
  putBlob(namespace: string, source: Readable): Promise<StoredObject>;

  /** Writes `data` at `key` once; throws ObjectExistsError if anything is there already. */
  createOnce(key: string, data: Uint8Array): Promise<StoredObject>;

  /** Streams an object by URI; throws ObjectNotFoundError if missing. */
  read(uri: string): Promise<Readable>;

  /**
   * Reads a whole (small) object by URI. Its size is checked before any byte is read, and again
   * while reading: more than `maxBytes` throws ObjectTooLargeError.
   */
  readAll(uri: string, maxBytes: number): Promise<Buffer>;

  exists(uri: string): Promise<boolean>;

  /** Keys under a prefix (relative to the root), sorted. */
  list(prefix: string): Promise<string[]>;

  /** Removes an object (cache invalidation tests, garbage collection); missing is fine. */
  delete(uri: string): Promise<void>;
}

/** The key of a namespace's content-addressed blob. */
export const blobKey = (namespace: string, hex: string) => `${namespace}/blobs/sha256/${hex}`;

/** Collects a stream into one buffer, refusing more than `maxBytes` (a size header can lie). */
export async function collectAtMost(source: AsyncIterable<Uint8Array | string>, maxBytes: number, uri: string, destroy: () => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    size += bytes.byteLength;
    if (size > maxBytes) {
      destroy();
      throw new ObjectTooLargeError(uri, maxBytes);
    }
    chunks.push(bytes);
  }
  return Buffer.concat(chunks, size);
}

/**
 * What the object stores' putBlob reads first: `source`, hashed, up to just past
 * `thresholdBytes`. A blob that ends by then comes back whole, its name (hash) known before
 * any upload; a larger one as a stream of everything (the bytes read, then the rest), still
 * hashed as it flows, with its digest and size read once it has been consumed.
 */
export async function readHashedHead(source: Readable, thresholdBytes: number): Promise<
  | { ended: true; bytes: Buffer; hex: string; size: number }
  | { ended: false; all: AsyncIterable<Uint8Array>; hex: () => string; size: () => number }
> {
  const hash: Hash = createHash('sha256');
  let size = 0;
  const chunks: AsyncIterator<unknown> = source[Symbol.asyncIterator]();
  const nextChunk = async (): Promise<Uint8Array | undefined> => {
    const next = await chunks.next();
    if (next.done === true) return undefined;
    const bytes = toBytes(next.value);
    hash.update(bytes);
    size += bytes.byteLength;
    return bytes;
  };
  const head: Uint8Array[] = [];
  let headBytes = 0;
  while (headBytes <= thresholdBytes) {
    const bytes = await nextChunk();
    if (bytes === undefined) return { ended: true, bytes: Buffer.concat(head, headBytes), hex: hash.digest('hex'), size };
    head.push(bytes);
    headBytes += bytes.byteLength;
  }
  const all = async function* (): AsyncGenerator<Uint8Array> {
    for (let bytes = head.shift(); bytes !== undefined; bytes = head.shift()) yield bytes;
    for (let bytes = await nextChunk(); bytes !== undefined; bytes = await nextChunk()) yield bytes;
  };
  return { ended: false, all: all(), hex: () => hash.digest('hex'), size: () => size };
}

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError(`putBlob needs a byte stream; got a chunk of type ${typeof chunk}`);
}
