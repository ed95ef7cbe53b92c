// Resolves image tags to digests through the OCI distribution API v2 (HEAD on the manifest),
// including the registry auth dance (Bearer token service or Basic) and a short-lived cache.
// Configuration freezing calls it once per step image; credentials come from pull Secrets.
// NOTE: tenants choose the registry host, so every request goes through the guarded agent
// (address policy at connect time), has a timeout and a resolution deadline, and every body is
// read with a size limit; what a tenant reads back in errors says no more than "unreachable".
import { createHash } from 'node:crypto';
import { fetch, type Agent } from 'undici';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { DEFAULT_TOKEN_REALMS, HostList, isRealmAllowed } from './address-policy.ts';
import { AddressRefusedError, createGuardedAgent, type HostLookup } from './guarded-agent.ts';
import { InvalidImageReferenceError, parseImageReference, pinnedReference, repositoryName, type ImageReference } from './reference.ts';
import { ImageResolutionError, type ImageResolver, type RegistryCredentials, type ResolvedImage } from './resolver.ts';

/**
 * What we accept, most specific first. Asking for indexes/lists too matters: the digest of a
 * multi-arch image is its index, which is what the kubelet pulls, and a registry that cannot
 * serve a type we accept answers 404 (docker-registry does so for OCI manifests without it).
 */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const;

/**
 * The most we read of any response body; a larger one is refused (not transient) and its
 * connection destroyed, never buffered. A registry controlled by a tenant must not be able to
 * fill the operator's memory.
 */
export const RESPONSE_LIMITS = {
  // The distribution spec lets registries refuse manifests above 4 MiB; nothing larger is a manifest.
  manifestBytes: 4 * 1024 * 1024,
  // JWTs with many access claims reach tens of KiB; a megabyte is no token.
  tokenBytes: 1024 * 1024,
  // We ask for at most 100 tags of at most 128 characters.
  tagListBytes: 1024 * 1024,
  // Only the first error's code and message are shown.
  errorBodyBytes: 64 * 1024,
} as const;

/** Redirects a registry request follows (each hop is a new, checked connection); token requests follow none. */
export const MAX_REDIRECTS = 3;

export interface RegistryImageResolverOptions {
  /**
   * Registry hosts (host[:port], as written in references) spoken to over plain http; all others
   * use https. An administrator named them, so they may be private or loopback addresses too.
   */
  insecureRegistries?: string[];
  /**
   * Registry hosts (host[:port]; no port means 80 and 443) that may resolve to private
   * (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) or loopback addresses, e.g. an in-cluster
   * registry. All other registries must be public. Link-local and cloud metadata addresses
   * (169.254/16, fe80::/10, 169.254.169.254, fd00:ec2::254, metadata.google.internal) are never
   * allowed, listed or not.
   */
  allowedPrivateRegistries?: string[];
  /**
   * Token services (host[:port]) a registry may send us to besides its own host name; auth.docker.io
   * is always allowed. An administrator named them, so they may be private addresses too.
   */
  allowedTokenRealms?: string[];
  /** Per HTTP request, including reading its body. Default 10 s. */
  requestTimeoutMs?: number;
  /** One whole resolution: auth, redirects, HEAD and GET. Default 30 s. */
  resolutionTimeoutMs?: number;
  /** How long a resolved tag is reused. Default 30 s; 0 disables reuse (concurrent lookups still share one request). */
  cacheTtlMs?: number;
  /** Bounds memory when many distinct images are resolved. Default 1000. */
  maxCacheEntries?: number;
  /** How host names become addresses (default: the system resolver); each answer is checked when connecting. */
  lookup?: HostLookup;
  clock?: Clock;
  userAgent?: string;
}

type Sha256Digest = `sha256:${string}`;

/** One round of resolving: what every request of it needs to know. */
interface Attempt {
  reference: string;
  ref: ImageReference;
  credentials: RegistryCredentials | undefined;
  /** Set once a 401 challenge was answered; later requests of the attempt reuse it. */
  authorization: string | undefined;
  /** Aborts when the resolution's deadline is over. */
  deadline: AbortSignal;
}

/** One HTTP request of an attempt. `target` names the peer in errors ("registry x", "token service https://y"). */
interface RequestSpec {
  target: string;
  method: 'HEAD' | 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** 0 for token requests. */
  maxRedirects: number;
}

interface CacheEntry { expiresAt: number; digest: Promise<Sha256Digest> }

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_DEADLINE_MS = 30_000;
const DEFAULT_TTL_MS = 30_000;
const MAX_DETAIL_CHARS = 200;

export class RegistryImageResolver implements ImageResolver {
  readonly #insecure: HostList;
  /** Hosts that may be private or loopback: insecure registries, allowed private registries and realms. */
  readonly #trusted: HostList;
  readonly #realms: HostList;
  readonly #timeoutMs: number;
  readonly #deadlineMs: number;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  readonly #userAgent: string;
  readonly #agent: Agent;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(options: RegistryImageResolverOptions = {}) {
    this.#insecure = new HostList(options.insecureRegistries ?? []);
    this.#realms = new HostList([...DEFAULT_TOKEN_REALMS, ...(options.allowedTokenRealms ?? [])]);
    this.#trusted = this.#insecure.concat(new HostList(options.allowedPrivateRegistries ?? [])).concat(new HostList(options.allowedTokenRealms ?? []));
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#deadlineMs = options.resolutionTimeoutMs ?? DEFAULT_DEADLINE_MS;
    this.#ttlMs = options.cacheTtlMs ?? DEFAULT_TTL_MS;
    this.#maxEntries = options.maxCacheEntries ?? 1000;
    this.#clock = options.clock ?? systemClock;
    this.#userAgent = options.userAgent ?? 'ferry-operator';
    const trusted = this.#trusted;
    this.#agent = createGuardedAgent({
      isTrusted: (hostname, port) => trusted.matches(hostname, port),
      ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
      connectTimeoutMs: this.#timeoutMs,
      headersTimeoutMs: this.#timeoutMs,
      bodyTimeoutMs: this.#timeoutMs,
      maxResponseBytes: Math.max(...Object.values(RESPONSE_LIMITS)),
    });
  }

  async resolve(reference: string, credentialsFor?: (registry: string) => RegistryCredentials | undefined): Promise<ResolvedImage> {
    let ref: ImageReference;
    try {
      ref = parseImageReference(reference);
    } catch (err) {
      if (err instanceof InvalidImageReferenceError) throw new ImageResolutionError(reference, err.message, false);
      throw err;
    }
    if (ref.digest !== undefined) {
      // NOTE: already pinned: no network, whatever the registry says about the tag now.
      if (!isSha256(ref.digest)) throw new ImageResolutionError(reference, `only sha256 digests are supported, not ${ref.digest.split(':')[0]}`, false);
      return { reference, pinned: pinnedReference(ref, ref.digest), digest: ref.digest };
    }
    const credentials = credentialsFor?.(ref.registry);
    const digest = await this.#cached(cacheKey(ref, credentials), () =>
      this.#resolveTag({ reference, ref, credentials, authorization: undefined, deadline: AbortSignal.timeout(this.#deadlineMs) }));
    return { reference, pinned: pinnedReference(ref, digest), digest };
  }

  /** Drops every cached resolution, e.g. after a user says an image was re-pushed. */
  clearCache(): void {
    this.#cache.clear();
  }

  /** Closes the kept-alive registry connections; the resolver cannot be used afterwards. */
  async close(): Promise<void> {
    await this.#agent.close();
  }

  /** Shares one lookup between concurrent callers and keeps its result for the TTL; failures are not kept. */
  #cached(key: string, lookup: () => Promise<Sha256Digest>): Promise<Sha256Digest> {
    const now = this.#clock.now().getTime();
    for (const [k, e] of this.#cache) if (e.expiresAt <= now) this.#cache.delete(k);
    const hit = this.#cache.get(key);
    if (hit) return hit.digest;
    while (this.#cache.size >= this.#maxEntries) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
    const entry: CacheEntry = { expiresAt: Number.POSITIVE_INFINITY, digest: lookup() };
    this.#cache.set(key, entry);
    entry.digest.then(
      () => {
        entry.expiresAt = this.#clock.now().getTime() + this.#ttlMs;
        if (this.#ttlMs <= 0 && this.#cache.get(key) === entry) this.#cache.delete(key);
      },
      () => { if (this.#cache.get(key) === entry) this.#cache.delete(key); },
    );
    return entry.digest;
  }

  async #resolveTag(attempt: Attempt): Promise<Sha256Digest> {
    const { ref } = attempt;
    const url = `${this.#baseUrl(ref.registry)}/v2/${ref.repository}/manifests/${ref.tag ?? 'latest'}`;
    const accept = MANIFEST_MEDIA_TYPES.join(', ');
    const head = await this.#send(attempt, 'HEAD', url, accept);
    if (head.ok) {
      await discard(head);
      const digest = head.headers.get('docker-content-digest');
      if (digest !== null && isSha256(digest)) return digest;
    } else if (head.status !== 405 && head.status !== 501) { // some registries and proxies do not do HEAD
      throw await this.#failure(attempt, head);
    } else {
      await discard(head);
    }
    // No usable Docker-Content-Digest (it is optional in the OCI spec): hash the manifest itself.
    const get = await this.#send(attempt, 'GET', url, accept);
    if (!get.ok) throw await this.#failure(attempt, get);
    const headerDigest = get.headers.get('docker-content-digest');
    const body = await this.#readBody(attempt, `registry ${ref.registry}`, get, RESPONSE_LIMITS.manifestBytes, 'manifest');
    if (headerDigest !== null && isSha256(headerDigest)) return headerDigest;
    return `sha256:${createHash('sha256').update(body).digest('hex')}`;
  }

  /** One request; on a 401 answers the challenge and retries once with the same authorization. */
  async #send(attempt: Attempt, method: 'HEAD' | 'GET', url: string, accept: string): Promise<Response> {
    const request = (): RequestSpec => ({
      target: `registry ${attempt.ref.registry}`, method, url, maxRedirects: MAX_REDIRECTS,
      headers: { Accept: accept, ...authHeader(attempt.authorization) },
    });
    const response = await this.#fetch(attempt, request());
    if (response.status !== 401 || attempt.authorization !== undefined) return response;
    const challenge = pickChallenge(parseWwwAuthenticate(response.headers.get('www-authenticate') ?? ''));
    await discard(response);
    attempt.authorization = await this.#authorize(attempt, challenge);
    return this.#fetch(attempt, request());
  }

  async #authorize(attempt: Attempt, challenge: AuthChallenge | undefined): Promise<string> {
    const { ref, credentials, reference } = attempt;
    if (challenge === undefined) {
      throw new ImageResolutionError(reference, `registry ${ref.registry} asked for authentication (HTTP 401) without a Basic or Bearer challenge`, false);
    }
    if (challenge.scheme === 'basic') {
      if (credentials?.username !== undefined && credentials.password !== undefined) return basicAuth(credentials.username, credentials.password);
      const given = credentials === undefined ? 'none were given' : 'the credentials given have no username and password';
      throw new ImageResolutionError(reference, `registry ${ref.registry} requires credentials (Basic auth) and ${given}; add an imagePullSecret for ${ref.registry}`, false);
    }
    return this.#fetchToken(attempt, challenge.params);
  }

  /** The token flow of https://distribution.github.io/distribution/spec/auth/token/. */
  async #fetchToken(attempt: Attempt, params: Record<string, string>): Promise<string> {
    const { ref, credentials, reference } = attempt;
    const realm = params.realm;
    let realmUrl: URL | undefined;
    try { realmUrl = realm === undefined ? undefined : new URL(realm); } catch { realmUrl = undefined; }
    if (realmUrl === undefined || (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:')) {
      throw new ImageResolutionError(reference, `registry ${ref.registry} sent a Bearer challenge without a usable realm (${JSON.stringify(truncate(realm ?? ''))})`, false);
    }
    // NOTE: the realm is whatever the registry says: without this a tenant's registry could make
    // the operator send requests (with the tenant's credentials) to any host it names.
    if (!isRealmAllowed(realmUrl, this.#registryHostnames(ref.registry), this.#realms)) {
      throw new ImageResolutionError(reference, `registry ${ref.registry} sent us to token service ${realmUrl.host}, which is neither the registry's own host nor an allowed token realm (allowedTokenRealms)`, false);
    }
    // NOTE: never send credentials in clear text to a token service the operator was not told is plain http.
    if (realmUrl.protocol === 'http:' && credentials !== undefined && !this.#insecure.hasAuthority(realmUrl.host) && !this.#insecure.hasAuthority(ref.registry)) {
      throw new ImageResolutionError(reference, `registry ${ref.registry} points to token service ${realmUrl.origin} over plain http; refusing to send credentials there (list it in insecureRegistries if that is intended)`, false);
    }
    const service = params.service;
    const scope = params.scope ?? `repository:${ref.repository}:pull`;
    const target = `token service ${realmUrl.origin}`;

    let response: Response;
    if (credentials?.token !== undefined && credentials.password === undefined) {
      // An identity token is a refresh token for the OAuth2 flow (what `docker login` stores as identitytoken).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.token, client_id: 'ferry', scope });
      if (service !== undefined) form.set('service', service);
      response = await this.#fetch(attempt, {
        target, method: 'POST', url: realmUrl.toString(), maxRedirects: 0,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString(),
      });
      if (response.status === 404 || response.status === 405) {
        // A token service without the OAuth2 endpoint: the token is then a bearer token in its own right.
        await discard(response);
        return `Bearer ${credentials.token}`;
      }
    } else {
      const url = new URL(realmUrl);
      if (service !== undefined) url.searchParams.set('service', service);
      url.searchParams.set('scope', scope);
      const basic = credentials?.username !== undefined && credentials.password !== undefined
        ? basicAuth(credentials.username, credentials.password) : undefined;
      response = await this.#fetch(attempt, { target, method: 'GET', url: url.toString(), maxRedirects: 0, headers: authHeader(basic) });
    }
    if (!response.ok) {
      const detail = await errorDetail(response);
      const transient = isTransientStatus(response.status);
      const what = response.status === 401 || response.status === 403
        ? `the token service ${realmUrl.origin} refused the credentials for ${ref.registry} (HTTP ${response.status}${detail})`
        : `the token service ${realmUrl.origin} answered HTTP ${response.status}${detail}`;
      throw new ImageResolutionError(reference, what, transient);
    }
    const raw = await this.#readBody(attempt, target, response, RESPONSE_LIMITS.tokenBytes, 'token response');
    const body = parseJson(raw);
    const token = isRecord(body) ? (typeof body.token === 'string' ? body.token : body.access_token) : undefined;
    if (typeof token !== 'string' || token === '') {
      throw new ImageResolutionError(reference, `the token service ${realmUrl.origin} answered without a token`, false);
    }
    return `Bearer ${token}`;
  }

  /** Turns a failed manifest response into an error a person can act on. */
  async #failure(attempt: Attempt, response: Response): Promise<ImageResolutionError> {
    const { ref, reference, credentials } = attempt;
    const status = response.status;
    const detail = await errorDetail(response);
    if (status === 404) return new ImageResolutionError(reference, await this.#notFoundMessage(attempt), false);
    if (status === 401 || status === 403) {
      // Docker Hub and others answer 401/403 for repositories that do not exist, to hide them.
      const message = credentials === undefined
        ? `access denied by ${ref.registry} (HTTP ${status}${detail}): the repository ${ref.repository} does not exist or needs credentials, and none were given`
        : `access denied by ${ref.registry} (HTTP ${status}${detail}): the credentials were refused or may not pull ${ref.repository}, or it does not exist`;
      return new ImageResolutionError(reference, message, false);
    }
    if (status === 429) return new ImageResolutionError(reference, `registry ${ref.registry} is rate limiting (HTTP 429${detail})`, true);
    return new ImageResolutionError(reference, `registry ${ref.registry} answered HTTP ${status}${detail}`, isTransientStatus(status));
  }

  /**
   * A manifest 404 does not say whether the repository or the tag is missing (docker-registry
   * says MANIFEST_UNKNOWN for both); the tag list does, so ask it for a sharper message.
   */
  async #notFoundMessage(attempt: Attempt): Promise<string> {
    const { ref } = attempt;
    const tag = ref.tag ?? 'latest';
    const generic = `not found: ${repositoryName(ref)} has no tag ${tag}, or the repository does not exist`;
    let raw: Uint8Array;
    try {
      const response = await this.#send(attempt, 'GET', `${this.#baseUrl(ref.registry)}/v2/${ref.repository}/tags/list?n=100`, 'application/json');
      if (response.status === 404) {
        await discard(response);
        return `not found: repository ${ref.repository} does not exist in registry ${ref.registry}`;
      }
      if (!response.ok) { await discard(response); return generic; }
      raw = await this.#readBody(attempt, `registry ${ref.registry}`, response, RESPONSE_LIMITS.tagListBytes, 'tag list');
    } catch (err) {
      // The 404 is the answer; a tag list too large to read only costs the sharper wording.
      if (err instanceof ImageResolutionError && /larger than/.test(err.message)) return `${generic} (its tag list is larger than ${formatBytes(RESPONSE_LIMITS.tagListBytes)} and was not read)`;
      return generic;
    }
    const body = parseJson(raw);
    const tags = isRecord(body) && Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
    const known = tags.length === 0 ? '' : ` (it has ${tags.slice(0, 5).map((t) => truncate(t)).join(', ')}${tags.length > 5 ? ', …' : ''})`;
    return `not found: tag ${tag} does not exist in ${repositoryName(ref)}${known}`;
  }

  /**
   * Sends one request through the guarded agent, following at most `maxRedirects` redirects
   * (each a new connection, checked by the address policy). Failures become errors that name
   * the peer as the tenant wrote it; the socket-level cause is kept in `cause`.
   */
  async #fetch(attempt: Attempt, spec: RequestSpec): Promise<Response> {
    let url = new URL(spec.url);
    let { method, body } = spec;
    let headers: Record<string, string> = { 'User-Agent': this.#userAgent, ...spec.headers };
    for (let hop = 0; ; hop++) {
      const response = await this.#fetchOnce(attempt, hop === 0 ? spec.target : `${spec.target} (after a redirect)`, method, url, headers, body);
      if (!isRedirect(response.status)) return response;
      const location = response.headers.get('location');
      await discard(response);
      const refuse = (why: string): ImageResolutionError =>
        new ImageResolutionError(attempt.reference, `${spec.target} answered HTTP ${response.status} (a redirect)${why}`, false);
      if (spec.maxRedirects === 0) throw refuse('; token requests follow no redirects');
      if (hop >= spec.maxRedirects) throw refuse(` more than ${spec.maxRedirects} times in a row`);
      let next: URL;
      try { next = new URL(location ?? '', url); } catch { throw refuse(' without a usable Location'); }
      if (location === null || (next.protocol !== 'https:' && next.protocol !== 'http:')) throw refuse(' without a usable Location');
      if (url.protocol === 'https:' && next.protocol === 'http:' && !this.#insecure.hasAuthority(next.host)) {
        throw refuse(' to plain http; refusing to downgrade (list the target in insecureRegistries if that is intended)');
      }
      // As fetch does: credentials stay with their origin, and 303 (or a 301/302 after POST) becomes a GET.
      if (next.origin !== url.origin) headers = withoutHeaders(headers, ['authorization']);
      if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        headers = withoutHeaders(headers, ['content-type']);
      }
      url = next;
    }
  }

  async #fetchOnce(attempt: Attempt, target: string, method: string, url: URL, headers: Record<string, string>, body: string | undefined): Promise<Response> {
    try {
      return await fetch(url, {
        method,
        headers,
        body,
        redirect: 'manual', // #fetch follows, checking each hop
        dispatcher: this.#agent,
        signal: AbortSignal.any([attempt.deadline, AbortSignal.timeout(this.#timeoutMs)]),
      });
    } catch (err) {
      throw this.#networkError(attempt, target, url.host, err);
    }
  }

  /** Reads a body with its limit; over the limit is not transient, a broken or slow read is. */
  async #readBody(attempt: Attempt, target: string, response: Response, limit: number, what: string): Promise<Uint8Array> {
    let body: Uint8Array | undefined;
    try {
      body = await readCapped(response, limit);
    } catch (err) {
      throw this.#networkError(attempt, target, new URL(response.url || 'http://unknown').host, err, ` while sending the ${what}`);
    }
    if (body === undefined) {
      throw new ImageResolutionError(attempt.reference, `the ${what} sent by ${target} is larger than the limit of ${formatBytes(limit)}; refused`, false);
    }
    return body;
  }

  #networkError(attempt: Attempt, target: string, host: string, err: unknown, during = ''): ImageResolutionError {
    const { reference } = attempt;
    const refused = findCause(err, (e): e is AddressRefusedError => e instanceof AddressRefusedError);
    if (refused !== undefined) {
      const why = refused.addressClass === 'private' || refused.addressClass === 'loopback'
        ? 'its address is private or loopback; an administrator can allow it with allowedPrivateRegistries'
        : 'its address is link-local, a cloud metadata endpoint or reserved, which is never allowed';
      return new ImageResolutionError(reference, `${target} is not allowed by the operator's address policy: ${why}`, false, { cause: err });
    }
    if (err instanceof Error && err.cause instanceof Error && err.cause.message === 'bad port') {
      // WHATWG fetch refuses some ports outright (6000, 6665-6669, 10080, …): retrying cannot help.
      return new ImageResolutionError(reference, `cannot talk to ${host}: fetch refuses that port (WHATWG "bad port" list); serve the registry on another port`, false, { cause: err });
    }
    if (findCause(err, (e): e is Error => (e as NodeJS.ErrnoException).code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') !== undefined) {
      return new ImageResolutionError(reference, `${target} sent a response larger than the limit of ${formatBytes(Math.max(...Object.values(RESPONSE_LIMITS)))}; refused`, false, { cause: err });
    }
    if (attempt.deadline.aborted) {
      return new ImageResolutionError(reference, `${target} unreachable${during}: the resolution did not finish within ${this.#deadlineMs} ms`, true, { cause: err });
    }
    if (isTimeout(err)) {
      return new ImageResolutionError(reference, `${target} unreachable${during}: no answer within ${this.#timeoutMs} ms`, true, { cause: err });
    }
    // NOTE: no socket error text (ECONNREFUSED 10.1.2.3:22 …): that would let tenants map networks.
    const hint = looksLikeTls(err) && !this.#insecure.hasAuthority(host) ? `; if ${host} serves plain http, list it in insecureRegistries` : '';
    return new ImageResolutionError(reference, `${target} unreachable${during}${hint}`, true, { cause: err });
  }

  /** The host names that are the registry's own: as written, and where its API lives. */
  #registryHostnames(registry: string): string[] {
    return [hostnameOf(registry), hostnameOf(apiHost(registry))];
  }

  #baseUrl(registry: string): string {
    return `${this.#insecure.hasAuthority(registry) ? 'http' : 'https'}://${apiHost(registry)}`;
  }
}

/** docker.io is the name in references; its API lives elsewhere. */
function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

function hostnameOf(authority: string): string {
  try { return new URL(`http://${authority}`).hostname; } catch { return authority; }
}

function cacheKey(ref: ImageReference, credentials: RegistryCredentials | undefined): string {
  // Keyed by who asks too: one tenant's credentials must not answer for another's.
  const identity = credentials === undefined
    ? 'anonymous'
    : createHash('sha256').update(JSON.stringify([credentials.username ?? null, credentials.password ?? null, credentials.token ?? null])).digest('hex');
  return `${repositoryName(ref)}:${ref.tag ?? 'latest'}\n${identity}`;
}

function isSha256(digest: string): digest is Sha256Digest {
  return /^sha256:[a-f0-9]{64}$/.test(digest);
}

function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(bytes: Uint8Array): unknown {
  try { return JSON.parse(Buffer.from(bytes).toString('utf8')); } catch { return undefined; }
}

function authHeader(authorization: string | undefined): Record<string, string> {
  return authorization === undefined ? {} : { Authorization: authorization };
}

function withoutHeaders(headers: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.includes(name.toLowerCase())));
}

function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** Cancelling the body makes undici destroy the connection: nothing more is read. */
async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

/**
 * Reads at most `max` bytes; undefined when the body is larger, in which case the connection
 * is destroyed (a declared Content-Length over the limit is refused before reading anything).
 */
async function readCapped(response: Response, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > max) { await discard(response); return undefined; }
  if (response.body === null) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > max) { await discard(response); return undefined; }
      chunks.push(chunk);
    }
  } catch (err) {
    // The agent's own cap (a backstop for bodies read elsewhere) is an over-limit too.
    if (findCause(err, (e): e is Error => (e as NodeJS.ErrnoException).code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') !== undefined) return undefined;
    throw err;
  }
  return Buffer.concat(chunks);
}

/** ": CODE message" from a registry's {"errors": [...]} body, or "" (HEAD responses have none, larger ones are not read). */
async function errorDetail(response: Response): Promise<string> {
  const body = await readCapped(response, RESPONSE_LIMITS.errorBodyBytes).catch(() => undefined);
  if (body === undefined || body.length === 0) return '';
  const parsed = parseJson(body);
  const errors = isRecord(parsed) && Array.isArray(parsed.errors) ? parsed.errors : [];
  const first: unknown = errors[0];
  // Not JSON (a proxy's error page) says nothing useful in one line; a registry's text is capped.
  if (isRecord(first)) return `: ${truncate([first.code, first.message].filter((s) => typeof s === 'string').join(' '))}`;
  return '';
}

/** Text a registry chose, shortened before it goes into a condition message. */
function truncate(text: string): string {
  return text.length <= MAX_DETAIL_CHARS ? text : `${text.slice(0, MAX_DETAIL_CHARS)}…`;
}

function formatBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** The first error in a cause chain (and AggregateError members) that matches. */
function findCause<T extends Error>(err: unknown, match: (e: Error) => e is T): T | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  while (queue.length > 0) {
    const e = queue.shift();
    if (!(e instanceof Error) || seen.has(e)) continue;
    seen.add(e);
    if (match(e)) return e;
    queue.push(e.cause);
    if (e instanceof AggregateError) queue.push(...e.errors);
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return findCause(err, (e): e is Error => e.name === 'TimeoutError' || e.name === 'AbortError'
    || ['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'].includes((e as NodeJS.ErrnoException).code ?? '')) !== undefined;
}

function looksLikeTls(err: unknown): boolean {
  return findCause(err, (e): e is Error => {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    return code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code === 'EPROTO' || /ssl|tls|certificate/i.test(e.message);
  }) !== undefined;
}

export interface AuthChallenge {
  /** Lower-cased auth scheme, e.g. bearer, basic. */
  scheme: string;
  /** Parameter names lower-cased, values unquoted. */
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header (RFC 9110 §11.6.1), including several challenges in one
 * header, which is how fetch joins repeated headers.
 */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  const token = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
  const param = /([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))/y; // lenient: unquoted URLs are seen in the wild
  const separators = /[ \t,]*/y;
  let i = 0;
  const skip = (): void => { separators.lastIndex = i; separators.exec(header); i = separators.lastIndex; };
  skip();
  while (i < header.length) {
    token.lastIndex = i;
    const scheme = token.exec(header);
    if (scheme === null) break; // malformed: keep what was understood
    i = token.lastIndex;
    const challenge: AuthChallenge = { scheme: scheme[0].toLowerCase(), params: {} };
    challenges.push(challenge);
    for (;;) {
      skip();
      param.lastIndex = i;
      const match = param.exec(header);
      if (match === null) break; // the next challenge's scheme, or the end
      i = param.lastIndex;
      const [, name = '', quoted, bare] = match;
      challenge.params[name.toLowerCase()] = quoted === undefined ? bare ?? '' : quoted.replace(/\\(.)/g, '$1');
    }
  }
  return challenges;
}

function pickChallenge(challenges: AuthChallenge[]): AuthChallenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

interface DockerConfigEntry { host: string; port: string; path: boolean; credentials: RegistryCredentials }

/**
 * Reads the `.dockerconfigjson` of a kubernetes.io/dockerconfigjson Secret (or the older
 * `.dockercfg` shape) into a lookup by registry host, matching hosts the way the kubelet does:
 * keys may be URLs (https://index.docker.io/v1/), may carry a path, and may use `*` per label.
 * Throws when the text is not such a document.
 */
export function credentialsFromDockerConfig(json: string): (registry: string) => RegistryCredentials | undefined {
  let parsed: unknown;
  try { parsed = JSON.parse(json); } catch (err) {
    throw new Error(`not a docker config: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isRecord(parsed)) throw new Error('not a docker config: expected a JSON object');
  const auths = 'auths' in parsed ? parsed.auths : parsed;
  if (!isRecord(auths)) throw new Error('not a docker config: "auths" is not an object');

  const entries: DockerConfigEntry[] = [];
  for (const [key, value] of Object.entries(auths)) {
    if (!isRecord(value)) continue;
    const credentials = entryCredentials(value);
    if (credentials === undefined) continue;
    const { host, port, path } = splitConfigKey(key);
    entries.push({ host, port, path, credentials });
  }
  // Exact host before wildcard, host-wide keys before path-scoped ones (we only know the host here),
  // then the order of the file.
  const rank = (e: DockerConfigEntry): number => (e.host.includes('*') ? 2 : 0) + (e.path ? 1 : 0);
  entries.sort((a, b) => rank(a) - rank(b));

  return (registry: string) => {
    const { host, port } = splitConfigKey(registry);
    return entries.find((e) => e.port === port && hostMatches(e.host, host))?.credentials;
  };
}

function entryCredentials(entry: Record<string, unknown>): RegistryCredentials | undefined {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  let username = str(entry.username);
  let password = str(entry.password);
  const auth = str(entry.auth);
  if ((username === undefined || password === undefined) && auth !== undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':'); // passwords may contain ':'; user names may not
    if (colon > 0) {
      username = decoded.slice(0, colon);
      const rest = decoded.slice(colon + 1);
      password = rest === '' ? undefined : rest;
    }
  }
  // registrytoken is ignored, as the kubelet does; identitytoken is the OAuth2 refresh token.
  const token = str(entry.identitytoken);
  if (username === undefined && password === undefined && token === undefined) return undefined;
  const credentials: RegistryCredentials = {};
  if (username !== undefined) credentials.username = username;
  if (password !== undefined) credentials.password = password;
  if (token !== undefined) credentials.token = token;
  return credentials;
}

const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com', 'docker.io']);

/** "https://Index.Docker.io/v1/" → docker.io; "reg.example.com:5000/team" → reg.example.com, 5000, path. */
function splitConfigKey(key: string): { host: string; port: string; path: boolean } {
  const withoutScheme = key.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = withoutScheme.indexOf('/');
  const hostPort = (slash === -1 ? withoutScheme : withoutScheme.slice(0, slash)).toLowerCase();
  const rest = slash === -1 ? '' : withoutScheme.slice(slash + 1).replace(/\/+$/, '');
  const portMatch = /^(.*?)(?::(\d+))?$/.exec(hostPort);
  const host = portMatch?.[1] ?? hostPort;
  const port = portMatch?.[2] ?? '';
  const isHub = DOCKER_HUB_ALIASES.has(host) && port === '';
  // Docker Hub's classic key ends in /v1/; API version paths are not scopes.
  const path = rest !== '' && !/^v[12]$/.test(rest);
  return { host: isHub ? 'docker.io' : host, port, path };
}

function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.includes('*')) return pattern === host;
  const patternLabels = pattern.split('.');
  const hostLabels = host.split('.');
  if (patternLabels.length !== hostLabels.length) return false; // `*` never spans a dot, as in the kubelet
  return patternLabels.every((p, i) => new RegExp(`^${p.split('*').map(escapeRegExp).join('[^.]*')}$`).test(hostLabels[i] ?? ''));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
