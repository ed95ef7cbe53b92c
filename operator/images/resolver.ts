// Resolving image references (tags) to digests, so that every Pod of a run runs exactly the
// bytes that were frozen in its configuration. The implementation talks to registries
// through the OCI distribution API v2 (registry-client.ts).

export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** A registry identity token or bearer token. */
  token?: string;
}

export interface ResolvedImage {
  /** The reference as written in the Pipeline, e.g. registry.example.com/team/train:1.4 */
  reference: string;
  /** The same repository pinned by digest, e.g. registry.example.com/team/train@sha256:… */
  pinned: string;
  digest: `sha256:${string}`;
}

/** Why an image could not be resolved, in words a person can act on. */
export class ImageResolutionError extends Error {
  readonly reference: string;
  /** True when retrying may help (network, 5xx, 429); false for unknown image/tag or bad credentials. */
  readonly transient: boolean;
  constructor(reference: string, message: string, transient: boolean) {
    super(`image ${reference}: ${message}`);
    this.name = 'ImageResolutionError';
    this.reference = reference;
    this.transient = transient;
  }
}

export interface ImageResolver {
  /**
   * Resolves a reference to a digest. A reference that already carries a digest is returned
   * as is (no network). `credentialsFor(registryHost)` supplies credentials, e.g. from a Pod's
   * imagePullSecrets (a dockerconfigjson).
   */
  resolve(reference: string, credentialsFor?: (registry: string) => RegistryCredentials | undefined): Promise<ResolvedImage>;
}
