// Opens the artifact store a URI names: file:///abs/path → FileArtifactStore, gs://bucket/prefix
// → GcsArtifactStore, s3://bucket/prefix → S3ArtifactStore. The composition root
// (operator/main.ts) and the step agent call this with the configured store URI; nothing else
// should pick an implementation.
import { pathToFileURL } from 'node:url';
import { FileArtifactStore, parseFileRoot } from './file-store.ts';
import { GcsArtifactStore, parseGcsRoot } from './gcs-store.ts';
import { S3ArtifactStore, parseS3Root } from './s3-store.ts';
import type { ArtifactStore } from './store.ts';

export interface OpenArtifactStoreOptions {
  /** A GCS JSON API endpoint other than Google's, e.g. fake-gcs-server in tests. */
  gcsApiEndpoint?: string;
  /** An S3 endpoint other than AWS's, e.g. SeaweedFS or MinIO (`http://host:port`). */
  s3Endpoint?: string;
  /** The S3 region; default: the SDK's (AWS_REGION), or us-east-1 with s3Endpoint. */
  s3Region?: string;
  /** Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need. */
  s3ForcePathStyle?: boolean;
}

export type StoreLocation =
  | { scheme: 'file'; root: string; path: string }
  | { scheme: 'gs'; root: string; bucket: string; prefix: string }
  | { scheme: 's3'; root: string; bucket: string; prefix: string };

/** Validates a store URI and splits it into its parts; throws with the reason for anything else. */
export function parseStoreUri(uri: string): StoreLocation {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'file': {
      const path = parseFileRoot(uri);
      return { scheme: 'file', root: pathToFileURL(path).href, path };
    }
    case 'gs': {
      const { bucket, prefix } = parseGcsRoot(uri);
      return { scheme: 'gs', root: prefix === '' ? `gs://${bucket}` : `gs://${bucket}/${prefix}`, bucket, prefix };
    }
    case 's3': {
      const { bucket, prefix } = parseS3Root(uri);
      return { scheme: 's3', root: prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}`, bucket, prefix };
    }
    case undefined: {
      const hint = uri.startsWith('/') ? ` (did you mean file://${uri}?)` : ' (relative paths are not accepted)';
      throw new Error(`artifact store URI ${JSON.stringify(uri)} has no scheme${hint}; use file:///abs/path, gs://bucket/prefix or s3://bucket/prefix`);
    }
    default:
      throw new Error(`artifact store URI ${JSON.stringify(uri)}: unsupported scheme ${scheme}:// (use file:///abs/path, gs://bucket/prefix or s3://bucket/prefix)`);
  }
}

export function openArtifactStore(uri: string, options: OpenArtifactStoreOptions = {}): ArtifactStore {
  const location = parseStoreUri(uri);
  switch (location.scheme) {
    case 'file':
      return new FileArtifactStore(uri);
    case 'gs':
      return new GcsArtifactStore(uri, options.gcsApiEndpoint !== undefined ? { apiEndpoint: options.gcsApiEndpoint } : {});
    case 's3':
      return new S3ArtifactStore(uri, {
        ...(options.s3Endpoint !== undefined ? { endpoint: options.s3Endpoint } : {}),
        ...(options.s3Region !== undefined ? { region: options.s3Region } : {}),
        ...(options.s3ForcePathStyle !== undefined ? { forcePathStyle: options.s3ForcePathStyle } : {}),
      });
  }
}
