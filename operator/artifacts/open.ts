// Opens the artifact store a URI names: file:///abs/path → FileArtifactStore, gs://bucket/prefix
// → GcsArtifactStore. The composition root (operator/main.ts) and the step agent call this with
// the configured store URI; nothing else should pick an implementation.
import { pathToFileURL } from 'node:url';
import { FileArtifactStore, parseFileRoot } from './file-store.ts';
import { GcsArtifactStore, parseGcsRoot } from './gcs-store.ts';
import type { ArtifactStore } from './store.ts';

export interface OpenArtifactStoreOptions {
  /** A GCS JSON API endpoint other than Google's, e.g. fake-gcs-server in tests. */
  gcsApiEndpoint?: string;
}

export type StoreLocation =
  | { scheme: 'file'; root: string; path: string }
  | { scheme: 'gs'; root: string; bucket: string; prefix: string };

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
    case 's3':
      throw new Error(`artifact store URI ${JSON.stringify(uri)}: s3:// is not supported yet (use file:///abs/path or gs://bucket/prefix)`);
    case undefined: {
      const hint = uri.startsWith('/') ? ` (did you mean file://${uri}?)` : ' (relative paths are not accepted)';
      throw new Error(`artifact store URI ${JSON.stringify(uri)} has no scheme${hint}; use file:///abs/path or gs://bucket/prefix`);
    }
    default:
      throw new Error(`artifact store URI ${JSON.stringify(uri)}: unsupported scheme ${scheme}:// (use file:///abs/path or gs://bucket/prefix)`);
  }
}

export function openArtifactStore(uri: string, options: OpenArtifactStoreOptions = {}): ArtifactStore {
  const location = parseStoreUri(uri);
  switch (location.scheme) {
    case 'file':
      return new FileArtifactStore(uri);
    case 'gs':
      return new GcsArtifactStore(uri, options.gcsApiEndpoint !== undefined ? { apiEndpoint: options.gcsApiEndpoint } : {});
  }
}
