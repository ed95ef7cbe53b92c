// Resolves image tags to digests through the OCI distribution API v2 (HEAD on the manifest),
// including the registry auth dance (Bearer token service or Basic) and a short-lived cache.
// Configuration freezing calls it once per step image; credentials come from pull Secrets.
import { createHash } from 'node:crypto';
import { systemClock, type Clock } from '../runtime/clock.ts';
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

export interface RegistryImageResolverOptions {
  /** Registry hosts (host[:port], as written in references) spoken to over plain http; all others use https. */
  insecureRegistries?: string[];
  /** Per HTTP request, including reading its body. Default 10 s. */
  requestTimeoutMs?: number;
  /** How long a resolved tag is reused. Default 30 s; 0 disables reuse (concurrent lookups still share one request). */
  cacheTtlMs?: number;
  /** Bounds memory when many distinct images are resolved. Default 1000. */
  maxCacheEntries?: number;
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
}

interface CacheEntry { expiresAt: number; digest: Promise<Sha256Digest> }

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_TTL_MS = 30_000;
// The distribution spec lets registries refuse manifests above 4 MiB; nothing larger is a manifest.
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export class RegistryImageResolver implements ImageResolver {
  readonly #insecure: ReadonlySet<string>;
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  readonly #userAgent: string;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(options: RegistryImageResolverOptions = {}) {
    this.#insecure = new Set((options.insecureRegistries ?? []).map((h) => h.replace(/^https?:\/\//, '').replace(/\/.*$/, '')));
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#ttlMs = options.cacheTtlMs ?? DEFAULT_TTL_MS;
    this.#maxEntries = options.maxCacheEntries ?? 1000;
    this.#clock = options.clock ?? systemClock;
    this.#userAgent = options.userAgent ?? 'ferry-operator';
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
      this.#resolveTag({ reference, ref, credentials, authorization: undefined }));
    return { reference, pinned: pinnedReference(ref, digest), digest };
  }

  /** Drops every cached resolution, e.g. after a user says an image was re-pushed. */
  clearCache(): void {
    this.#cache.clear();
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
      const digest = head.headers.get('docker-content-digest');
      if (digest !== null && isSha256(digest)) return digest;
    } else if (head.status !== 405 && head.status !== 501) { // some registries and proxies do not do HEAD
      throw await this.#failure(attempt, head);
    }
    // No usable Docker-Content-Digest (it is optional in the OCI spec): hash the manifest itself.
    const get = await this.#send(attempt, 'GET', url, accept);
    if (!get.ok) throw await this.#failure(attempt, get);
    const headerDigest = get.headers.get('docker-content-digest');
    const body = await readCapped(get, MAX_MANIFEST_BYTES).catch((err: unknown) => {
      throw new ImageResolutionError(attempt.reference, `reading the manifest from ${ref.registry} failed: ${describeNetworkError(err, this.#timeoutMs)}`, true);
    });
    if (body === undefined) throw new ImageResolutionError(attempt.reference, `the manifest served by ${ref.registry} is larger than ${MAX_MANIFEST_BYTES} bytes`, false);
    if (headerDigest !== null && isSha256(headerDigest)) return headerDigest;
    return `sha256:${createHash('sha256').update(body).digest('hex')}`;
  }

  /** One request; on a 401 answers the challenge and retries once with the same authorization. */
  async #send(attempt: Attempt, method: 'HEAD' | 'GET', url: string, accept: string): Promise<Response> {
    const response = await this.#fetch(attempt, method, url, { Accept: accept, ...authHeader(attempt.authorization) });
    if (response.status !== 401 || attempt.authorization !== undefined) return response;
    const challenge = pickChallenge(parseWwwAuthenticate(response.headers.get('www-authenticate') ?? ''));
    await discard(response);
    attempt.authorization = await this.#authorize(attempt, challenge);
    return this.#fetch(attempt, method, url, { Accept: accept, ...authHeader(attempt.authorization) });
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
      throw new ImageResolutionError(reference, `registry ${ref.registry} sent a Bearer challenge without a usable realm (${JSON.stringify(realm)})`, false);
    }
    // NOTE: never send credentials in clear text to a token service the operator was not told is plain http.
    if (realmUrl.protocol === 'http:' && credentials !== undefined && !this.#insecure.has(realmUrl.host) && !this.#insecure.has(ref.registry)) {
      throw new ImageResolutionError(reference, `registry ${ref.registry} points to token service ${realmUrl.origin} over plain http; refusing to send credentials there (list it in insecureRegistries if that is intended)`, false);
    }
    const service = params.service;
    const scope = params.scope ?? `repository:${ref.repository}:pull`;

    let response: Response;
    if (credentials?.token !== undefined && credentials.password === undefined) {
      // An identity token is a refresh token for the OAuth2 flow (what `docker login` stores as identitytoken).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.token, client_id: 'ferry', scope });
      if (service !== undefined) form.set('service', service);
      response = await this.#fetch(attempt, 'POST', realmUrl.toString(), { 'Content-Type': 'application/x-www-form-urlencoded' }, form.toString());
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
      response = await this.#fetch(attempt, 'GET', url.toString(), authHeader(basic));
    }
    if (!response.ok) {
      const detail = await errorDetail(response);
      const transient = isTransientStatus(response.status);
      const what = response.status === 401 || response.status === 403
        ? `the token service ${realmUrl.origin} refused the credentials for ${ref.registry} (HTTP ${response.status}${detail})`
        : `the token service ${realmUrl.origin} answered HTTP ${response.status}${detail}`;
      throw new ImageResolutionError(reference, what, transient);
    }
    const body: unknown = await response.json().catch(() => undefined);
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
    try {
      const response = await this.#send(attempt, 'GET', `${this.#baseUrl(ref.registry)}/v2/${ref.repository}/tags/list?n=100`, 'application/json');
      if (response.status === 404) {
        await discard(response);
        return `not found: repository ${ref.repository} does not exist in registry ${ref.registry}`;
      }
      if (!response.ok) { await discard(response); return generic; }
      const body: unknown = await response.json();
      const tags = isRecord(body) && Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
      const known = tags.length === 0 ? '' : ` (it has ${tags.slice(0, 5).join(', ')}${tags.length > 5 ? ', …' : ''})`;
      return `not found: tag ${tag} does not exist in ${repositoryName(ref)}${known}`;
    } catch {
      return generic;
    }
  }

  async #fetch(attempt: Attempt, method: string, url: string, headers: Record<string, string>, body?: string): Promise<Response> {
    try {
      return await fetch(url, {
        method,
        headers: { 'User-Agent': this.#userAgent, ...headers },
        body,
        redirect: 'follow', // fetch drops Authorization on cross-origin redirects
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      const host = new URL(url).host;
      if (err instanceof Error && err.cause instanceof Error && err.cause.message === 'bad port') {
        // WHATWG fetch refuses some ports outright (6000, 6665-6669, 10080, …): retrying cannot help.
        throw new ImageResolutionError(attempt.reference, `cannot talk to ${host}: fetch refuses that port (WHATWG "bad port" list); serve the registry on another port`, false);
      }
      const hint = looksLikeTls(err) && !this.#insecure.has(host) ? `; if ${host} serves plain http, list it in insecureRegistries` : '';
      throw new ImageResolutionError(attempt.reference, `cannot reach ${host}: ${describeNetworkError(err, this.#timeoutMs)}${hint}`, true);
    }
  }

  #baseUrl(registry: string): string {
    // docker.io is the name in references; its API lives elsewhere.
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    return `${this.#insecure.has(registry) ? 'http' : 'https'}://${host}`;
  }
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

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function authHeader(authorization: string | undefined): Record<string, string> {
  return authorization === undefined ? {} : { Authorization: authorization };
}

function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

/** Reads at most `max` bytes; undefined when the body is larger. */
async function readCapped(response: Response, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > max) { await discard(response); return undefined; }
  if (response.body === null) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.byteLength;
    if (size > max) { await discard(response); return undefined; }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** ": CODE message" from a registry's {"errors": [...]} body, or "" (HEAD responses have none). */
async function errorDetail(response: Response): Promise<string> {
  const body = await readCapped(response, MAX_ERROR_BODY_BYTES).catch(() => undefined);
  if (body === undefined || body.length === 0) return '';
  try {
    const parsed: unknown = JSON.parse(Buffer.from(body).toString('utf8'));
    const errors = isRecord(parsed) && Array.isArray(parsed.errors) ? parsed.errors : [];
    const first: unknown = errors[0];
    if (isRecord(first)) return `: ${[first.code, first.message].filter((s) => typeof s === 'string').join(' ')}`;
  } catch { /* not JSON: a proxy's error page says nothing useful in one line */ }
  return '';
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    // TLS errors carry OpenSSL's multi-line text in message and the gist in `reason`.
    const reason = (cause as { reason?: unknown }).reason;
    const text = typeof reason === 'string' ? reason : cause.message.split('\n')[0] ?? '';
    return code !== undefined && !text.includes(code) ? `${code} ${text}` : text;
  }
  return err instanceof Error ? err.message : String(err);
}

function looksLikeTls(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code ?? '' : '';
  const message = cause instanceof Error ? cause.message : '';
  return code.startsWith('ERR_SSL') || code === 'EPROTO' || /ssl|tls|certificate/i.test(message);
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
