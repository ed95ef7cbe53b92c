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
  /**
   * NOTE: the message lands in PipelineRun conditions, which tenants read: it names hosts as the
   * tenant wrote them and HTTP statuses, never resolved addresses, ports probed or socket errors.
   * Those go in `cause`, for the operator's logs.
   */
  constructor(reference: string, message: string, transient: boolean, options?: { cause?: unknown }) {
    super(`image ${reference}: ${message}`, options);
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

export interface ResolveAllOptions {
  /** At most this many resolutions at once. Default 4. */
  concurrency?: number;
  /**
   * Overall deadline for the whole list: what has not resolved by then fails with a transient
   * error. Default none (each resolution still has the resolver's own deadline).
   */
  deadlineMs?: number;
}

/** One entry of resolveAll: the image, or why it could not be resolved. */
export type ImageResolution =
  | { image: ResolvedImage; error?: undefined }
  | { image?: undefined; error: ImageResolutionError };

const DEFAULT_CONCURRENCY = 4;

/**
 * Resolves many references with bounded concurrency, keeping one result per key (e.g. a step
 * name), in the order given. Resolution failures are results; any other error (a bug) stops
 * handing out work and is thrown once the resolutions in flight have settled.
 */
export async function resolveAll<K>(
  resolver: ImageResolver,
  references: Iterable<readonly [key: K, reference: string]>,
  credentialsFor?: (registry: string) => RegistryCredentials | undefined,
  options: ResolveAllOptions = {},
): Promise<Map<K, ImageResolution>> {
  const entries = [...references];
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`resolveAll: concurrency must be a positive integer, not ${concurrency}`);
  const { deadlineMs } = options;
  if (deadlineMs !== undefined && !(deadlineMs > 0)) throw new RangeError(`resolveAll: deadlineMs must be positive, not ${deadlineMs}`);

  const results: Array<ImageResolution | undefined> = new Array(entries.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  let expired = false;
  let timer: NodeJS.Timeout | undefined;
  const deadline = deadlineMs === undefined ? undefined : new Promise<void>((resolve) => {
    timer = setTimeout(() => { expired = true; resolve(); }, deadlineMs);
  });
  const late = (reference: string): ImageResolution =>
    ({ error: new ImageResolutionError(reference, `not resolved within the deadline of ${deadlineMs} ms for all images`, true) });

  const worker = async (): Promise<void> => {
    while (failure === undefined) {
      const i = next++;
      const entry = entries[i];
      if (entry === undefined) return;
      const reference = entry[1];
      if (expired) { results[i] = late(reference); continue; }
      const work = resolver.resolve(reference, credentialsFor).then(
        (image): ImageResolution => ({ image }),
        (err: unknown): ImageResolution => { if (err instanceof ImageResolutionError) return { error: err }; throw err; },
      );
      // A resolution that loses the race to the deadline still settles later, within the
      // resolver's own deadline; nobody waits for it, so its failure must not go unhandled.
      work.catch(() => {});
      try {
        results[i] = deadline === undefined ? await work : await Promise.race([work, deadline.then(() => late(reference))]);
      } catch (err) {
        failure ??= { error: err };
        return;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
  } finally {
    clearTimeout(timer);
  }
  if (failure !== undefined) throw failure.error;
  const byKey = new Map<K, ImageResolution>();
  entries.forEach(([key], i) => {
    const result = results[i];
    if (result !== undefined) byKey.set(key, result);
  });
  return byKey;
}
