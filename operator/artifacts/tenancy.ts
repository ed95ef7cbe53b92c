// Which objects of the artifact store belong to which namespace. Every key a run writes starts
// with its namespace (`<namespace>/…`), and every URI a user gives (reproduceFrom, a
// ModelVersion's artifact, an input from another pipeline) is resolved here before anything is
// read: a URI outside the run's namespace is refused without saying whether it exists.
import type { ArtifactStore } from './store.ts';

/** A URI that names no object of the run's namespace. NOTE: its message discloses nothing about the object. */
export class CrossNamespaceReferenceError extends Error {
  constructor(what: string, namespace: string) {
    super(`${what} does not name an object of namespace "${namespace}" in the artifact store`);
    this.name = 'CrossNamespaceReferenceError';
  }
}

/** Blobs written before keys were namespaced: `blobs/sha256/<hex>` at the store's root. */
const legacyBlobKey = /^blobs\/sha256\/([0-9a-f]{64})$/;

/**
 * The URI of `uri` as an object of `namespace`, or CrossNamespaceReferenceError. A legacy blob
 * URI (from before namespaced keys) resolves to the namespace's own copy of that blob, which
 * `ferry migrate-store` creates for the namespaces whose runs recorded it; another namespace
 * finds nothing there.
 */
export function uriInNamespace(store: ArtifactStore, uri: string, namespace: string, what = 'the URI'): string {
  let key: string;
  try {
    key = store.keyOf(uri);
  } catch {
    throw new CrossNamespaceReferenceError(what, namespace);
  }
  if (namespace !== '' && key.startsWith(`${namespace}/`)) return uri;
  const legacy = legacyBlobKey.exec(key);
  if (legacy && namespace !== '') return store.uriFor(`${namespace}/blobs/sha256/${legacy[1]}`);
  throw new CrossNamespaceReferenceError(what, namespace);
}

