// The artifact store: where step outputs and frozen configurations live. One small interface,
// two implementations chosen by URI (open.ts): file:///path (a mounted volume, the default)
// and gs://bucket/prefix (Google Cloud Storage). Objects are immutable once written.
import type { Readable } from 'node:stream';

/** `sha256:<64 hex>` */
export type Digest = `sha256:${string}`;

export interface StoredObject {
  /** Absolute URI: file:///…/key or gs://bucket/prefix/key */
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

/** The object does not exist. */
export class ObjectNotFoundError extends Error {
  readonly uri: string;
  constructor(uri: string) {
    super(`${uri} does not exist`);
    this.name = 'ObjectNotFoundError';
    this.uri = uri;
  }
}

export interface ArtifactStore {
  /** The store's root URI, e.g. file:///var/lib/ferry/artifacts or gs://bucket/prefix. */
  readonly root: string;

  /** The URI of a key (a relative path with / separators) under the root. */
  uriFor(key: string): string;

  /**
   * Streams `source` into a content-addressed blob at `blobs/sha256/<hex>`, hashing while it
   * uploads (bounded memory, no whole-file buffering). Writing content that is already stored
   * returns the existing object.
   */
  putBlob(source: Readable): Promise<StoredObject>;

  /** Writes `data` at `key` once; throws ObjectExistsError if anything is there already. */
  createOnce(key: string, data: Uint8Array): Promise<StoredObject>;

  /** Streams an object by URI; throws ObjectNotFoundError if missing. */
  read(uri: string): Promise<Readable>;

  /** Reads a whole (small) object by URI. */
  readAll(uri: string): Promise<Buffer>;

  exists(uri: string): Promise<boolean>;

  /** Keys under a prefix (relative to the root), sorted. */
  list(prefix: string): Promise<string[]>;

  /** Removes an object (cache invalidation tests, garbage collection); missing is fine. */
  delete(uri: string): Promise<void>;
}
