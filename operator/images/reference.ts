// Parses container image references the way Docker, containerd and the kubelet do
// (github.com/distribution/reference): default registry docker.io, `library/` for single-name
// images, tag `latest` when neither tag nor digest is given. Pure; registry-client.ts uses it.

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';

export interface ImageReference {
  /** Registry host with optional port, e.g. docker.io, 127.0.0.1:5000, registry.example.com. */
  registry: string;
  /** Repository path inside the registry, e.g. library/busybox, team/train. */
  repository: string;
  /** `latest` when the reference names neither tag nor digest; undefined when only a digest is given. */
  tag: string | undefined;
  /** `algorithm:hex`, e.g. sha256:…; when present it wins over the tag, as in the container tooling. */
  digest: string | undefined;
}

/** The input is not an image reference; the message says what is wrong with it. */
export class InvalidImageReferenceError extends Error {
  readonly reference: string;
  constructor(reference: string, reason: string) {
    super(`invalid image reference ${JSON.stringify(reference)}: ${reason}`);
    this.name = 'InvalidImageReferenceError';
    this.reference = reference;
  }
}

// The grammar of distribution/reference (regexp.go), anchored.
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const repositoryPattern = new RegExp(`^${pathComponent}(?:/${pathComponent})*$`);
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const registryPattern = new RegExp(`^(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
// go-digest only accepts these algorithms, each with lowercase hex of a fixed length.
const digestHexLength: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
const NAME_TOTAL_MAX = 255;

export function parseImageReference(input: string): ImageReference {
  const fail = (reason: string): never => { throw new InvalidImageReferenceError(input, reason); };
  if (input === '') fail('it is empty');
  if (/\s/.test(input)) fail('it contains whitespace');
  // A bare image ID would otherwise parse as docker.io/library/<hex>; the tooling refuses it.
  if (/^[a-f0-9]{64}$/.test(input)) fail('a 64-character hexadecimal image ID is not a reference; use repository@sha256:…');

  const at = input.indexOf('@');
  const beforeDigest = at === -1 ? input : input.slice(0, at);
  const digest = at === -1 ? undefined : input.slice(at + 1);

  const { registry, remainder } = splitRegistry(beforeDigest);
  // Paths never contain ':' so, with the registry split off, a ':' can only start the tag.
  const colon = remainder.lastIndexOf(':');
  const path = colon === -1 ? remainder : remainder.slice(0, colon);
  const tag = colon === -1 ? undefined : remainder.slice(colon + 1);

  if (path === '') fail('the repository name is empty');
  if (path.toLowerCase() !== path) fail('the repository name must be lowercase');
  if (!repositoryPattern.test(path)) fail(`${JSON.stringify(path)} is not a valid repository name`);
  if (!registryPattern.test(registry)) fail(`${JSON.stringify(registry)} is not a valid registry host`);
  if (tag !== undefined && !tagPattern.test(tag)) fail(`${JSON.stringify(tag)} is not a valid tag`);
  if (digest !== undefined) validateDigest(digest, fail);

  const normalizedRegistry = registry === 'index.docker.io' ? DEFAULT_REGISTRY : registry;
  const repository = normalizedRegistry === DEFAULT_REGISTRY && !path.includes('/') ? `library/${path}` : path;
  if (`${normalizedRegistry}/${repository}`.length > NAME_TOTAL_MAX) fail(`the repository name is longer than ${NAME_TOTAL_MAX} characters`);
  return {
    registry: normalizedRegistry,
    repository,
    tag: tag ?? (digest === undefined ? DEFAULT_TAG : undefined),
    digest,
  };
}

/**
 * The first path component is a registry host only if it looks like one: it has a '.' or
 * a ':' (port), is `localhost`, or has upper-case letters (which repositories cannot).
 */
function splitRegistry(name: string): { registry: string; remainder: string } {
  const slash = name.indexOf('/');
  if (slash === -1) return { registry: DEFAULT_REGISTRY, remainder: name };
  const first = name.slice(0, slash);
  const isHost = /[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first;
  return isHost ? { registry: first, remainder: name.slice(slash + 1) } : { registry: DEFAULT_REGISTRY, remainder: name };
}

function validateDigest(digest: string, fail: (reason: string) => never): void {
  if (!digestPattern.test(digest)) fail(`${JSON.stringify(digest)} is not a valid digest (algorithm:hex)`);
  const [algorithm = '', hex = ''] = digest.split(':');
  const length = digestHexLength[algorithm];
  if (length === undefined) fail(`digest algorithm ${JSON.stringify(algorithm)} is not supported (sha256, sha384, sha512)`);
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) fail(`a ${algorithm} digest has ${length} lowercase hexadecimal characters`);
}

/** registry/repository, e.g. docker.io/library/busybox. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The fully qualified form: registry/repository[:tag][@digest]. */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** The same repository pinned by digest only (the tag is dropped: the digest alone says what runs). */
export function pinnedReference(ref: ImageReference, digest: string): string {
  return `${repositoryName(ref)}@${digest}`;
}
