// The one door to the Kubernetes API: typed JSON requests over client-node's auth (kubeconfig,
// in-cluster token, exec plugins) and one pooled connection, behind a client-side token bucket,
// with errors that name the request. Watches use client-node's Watch on the same config.
// An optional write fence (leadership) stops every mutating request before it is sent.
import { createHash } from 'node:crypto';
import type { RequestOptions } from 'node:https';
import { HttpMethod, KubeConfig, RequestContext, Watch } from '@kubernetes/client-node';
import { Agent, fetch, type Dispatcher } from 'undici';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import { TokenBucket } from '../runtime/token-bucket.ts';
import { ApiError, FencedError, isNotFound } from './errors.ts';
import { resourcePath, type Resource } from './resources.ts';

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface RequestObserver {
  request(verb: string, code: number, seconds: number): void;
}

export type WatchEvent<T> = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: T };

export const MERGE_PATCH = 'application/merge-patch+json';
export const APPLY_PATCH = 'application/apply-patch+yaml';

export interface KubeClientOptions {
  qps: number;
  burst: number;
  fieldManager: string;
  observer?: RequestObserver;
  /**
   * Writes (POST, PUT, PATCH, DELETE) are sent only while this returns true, checked just before
   * each is sent; otherwise they throw FencedError. Reads and watches go on, so caches stay warm.
   */
  fence?: () => boolean;
  /**
   * Aborted when the fence closes: a write sent while it was open but not yet answered (a
   * stalled connection) is cut off then, instead of landing later.
   */
  fenceSignal?: () => AbortSignal;
}

/** Per request: `signal` aborts it (with the client's own 60 s timeout, whichever comes first). */
export interface CallOptions {
  signal?: AbortSignal;
}

const REQUEST_TIMEOUT_MS = 60_000;

/** TLS settings of a connection, from the kubeconfig (read again on every request: files rotate). */
type TlsOptions = Pick<RequestOptions, 'ca' | 'cert' | 'key' | 'pfx' | 'passphrase' | 'rejectUnauthorized' | 'servername'>;

export class KubeClient {
  readonly config: KubeConfig;
  private readonly limiter: TokenBucket;
  private readonly options: KubeClientOptions;
  /** The pooled connection and the TLS settings it was made with. */
  private pool: { fingerprint: string; agent: Agent } | undefined;

  constructor(config: KubeConfig, options: KubeClientOptions) {
    this.config = config;
    this.options = options;
    this.limiter = new TokenBucket(options.qps, options.burst);
  }

  async get<T>(r: Resource, namespace: string | undefined, name: string, options: CallOptions = {}): Promise<T> {
    return this.request<T>('GET', resourcePath(r, namespace, name), undefined, undefined, options);
  }

  async getOrUndefined<T>(r: Resource, namespace: string | undefined, name: string, options: CallOptions = {}): Promise<T | undefined> {
    try {
      return await this.get<T>(r, namespace, name, options);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Lists every page of a collection. `slim` is applied page by page, so a list of 10k Pods never
   * holds 10k whole Pods at once when only part of each is kept.
   */
  async list<T>(
    r: Resource, namespace?: string, labelSelector?: string, slim?: (item: T) => T, options: CallOptions & { fieldSelector?: string } = {},
  ): Promise<ListResult<T>> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      const query = new URLSearchParams({ limit: '500' });
      if (labelSelector) query.set('labelSelector', labelSelector);
      if (options.fieldSelector) query.set('fieldSelector', options.fieldSelector);
      if (continueToken) query.set('continue', continueToken);
      const page = await this.request<{ items: T[]; metadata: { resourceVersion: string; continue?: string } }>(
        'GET',
        `${resourcePath(r, namespace)}?${query}`,
        undefined,
        undefined,
        options,
      );
      for (const item of page.items) items.push(slim ? slim(item) : item);
      resourceVersion = page.metadata.resourceVersion;
      continueToken = page.metadata.continue || undefined;
    } while (continueToken);
    return { items, resourceVersion };
  }

  async create<T extends KubeObject>(r: Resource, namespace: string | undefined, object: T, options: CallOptions = {}): Promise<T> {
    return this.request<T>('POST', `${resourcePath(r, namespace)}?fieldManager=${this.options.fieldManager}`, object, undefined, options);
  }

  async replace<T extends KubeObject>(r: Resource, object: T, options: CallOptions = {}): Promise<T> {
    const path = resourcePath(r, object.metadata.namespace, object.metadata.name);
    return this.request<T>('PUT', `${path}?fieldManager=${this.options.fieldManager}`, object, undefined, options);
  }

  /** Replaces the status subresource; the object's resourceVersion makes a stale write fail with 409. */
  async replaceStatus<T extends KubeObject>(r: Resource, object: T): Promise<T> {
    const path = resourcePath(r, object.metadata.namespace, object.metadata.name, 'status');
    return this.request<T>('PUT', `${path}?fieldManager=${this.options.fieldManager}`, object);
  }

  /** JSON merge patch; include metadata.resourceVersion in the patch for optimistic concurrency. */
  async mergePatch<T>(r: Resource, namespace: string | undefined, name: string, patch: unknown, subresource?: string): Promise<T> {
    const path = `${resourcePath(r, namespace, name, subresource)}?fieldManager=${this.options.fieldManager}`;
    return this.request<T>('PATCH', path, patch, MERGE_PATCH);
  }

  /** Deletes; a missing object counts as deleted. */
  async delete(r: Resource, namespace: string | undefined, name: string, options: { uid?: string; gracePeriodSeconds?: number } = {}): Promise<void> {
    const body = {
      kind: 'DeleteOptions',
      apiVersion: 'v1',
      propagationPolicy: 'Background',
      ...(options.uid ? { preconditions: { uid: options.uid } } : {}),
      ...(options.gracePeriodSeconds !== undefined ? { gracePeriodSeconds: options.gracePeriodSeconds } : {}),
    };
    try {
      await this.request('DELETE', resourcePath(r, namespace, name), body);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /**
   * Starts a watch from a resourceVersion with bookmarks. `onDone` is called once when the
   * stream ends for any reason (server timeout, network error, abort).
   */
  async watch<T>(
    r: Resource,
    namespace: string | undefined,
    params: { resourceVersion: string; labelSelector?: string; timeoutSeconds: number; idleTimeoutMs: number },
    onEvent: (event: WatchEvent<T>) => void,
    onDone: (err: unknown) => void,
  ): Promise<AbortController> {
    const watch = new Watch(this.config);
    // The Watch aborts a stream that sends nothing for this long: our watchdog against silent stalls.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = params.idleTimeoutMs;
    await this.limiter.take();
    const started = performance.now();
    const controller = await watch.watch(
      resourcePath(r, namespace),
      {
        resourceVersion: params.resourceVersion,
        allowWatchBookmarks: true,
        labelSelector: params.labelSelector,
        timeoutSeconds: params.timeoutSeconds,
      },
      (type, object) => onEvent({ type: type as WatchEvent<T>['type'], object: object as T }),
      (err) => {
        this.options.observer?.request('WATCH', err ? statusOf(err) : 200, (performance.now() - started) / 1000);
        onDone(err);
      },
    );
    return controller;
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', options: CallOptions = {}): Promise<T> {
    const cluster = this.config.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    await this.limiter.take();
    const started = performance.now();
    const { headers: auth, dispatcher } = await this.connection(cluster.server + path, method);
    const headers: Record<string, string> = { ...auth, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = contentType;
    // NOTE: after the last await before sending: a fence closed while this waited for a token holds.
    if (this.options.fence && method !== 'GET' && !this.options.fence()) throw new FencedError(method, path);
    const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    const fenced = method !== 'GET' ? this.options.fenceSignal?.() : undefined;
    let status = 0;
    try {
      const response = await fetch(cluster.server + path, {
        method,
        headers,
        dispatcher,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.any([timeout, ...(options.signal ? [options.signal] : []), ...(fenced ? [fenced] : [])]),
      });
      status = response.status;
      const text = await response.text();
      const parsed = parseJson(text);
      if (status >= 400) {
        const statusObject = (parsed ?? {}) as { reason?: string; message?: string };
        throw new ApiError(method, path, status, statusObject.reason ?? 'Unknown', statusObject.message ?? text.slice(0, 500));
      }
      return parsed as T;
    } finally {
      this.options.observer?.request(method, status, (performance.now() - started) / 1000);
    }
  }

  /**
   * The auth headers of a request and the connection to send it on. client-node builds a new
   * undici Agent for every request, so each one paid a TLS handshake (and parsed the CA again):
   * that was most of the operator's CPU. Here one Agent (one HTTP/2 connection, as client-go
   * keeps) serves every request while the TLS settings stay the same; rotated certificates get
   * a new one. Proxied clusters keep client-node's own dispatcher.
   */
  private async connection(url: string, method: string): Promise<{ headers: Record<string, string>; dispatcher: Dispatcher | undefined }> {
    if (this.config.getCurrentCluster()?.proxyUrl) {
      const context = new RequestContext(url, method as HttpMethod);
      await this.config.applySecurityAuthentication(context);
      return { headers: context.getHeaders(), dispatcher: context.getDispatcher() };
    }
    const options: RequestOptions = {};
    await this.config.applyToHTTPSOptions(options);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(options.headers ?? {})) if (v !== undefined) headers[k] = String(v);
    if (options.auth) headers.Authorization = `Basic ${Buffer.from(options.auth).toString('base64')}`;
    const tls: TlsOptions = {};
    for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const) {
      if (options[k] !== undefined && options[k] !== null) (tls as Record<string, unknown>)[k] = options[k];
    }
    if (Object.keys(tls).length === 0) return { headers, dispatcher: undefined };
    const fingerprint = fingerprintOf(tls);
    if (this.pool?.fingerprint !== fingerprint) {
      const previous = this.pool?.agent;
      // client-node's keep-alive settings (30 s, as client-go).
      this.pool = { fingerprint, agent: new Agent({ connect: { ...tls, keepAlive: true, keepAliveInitialDelay: 30_000 } as Agent.Options['connect'] }) };
      // Requests in flight on the old connection finish; then it closes.
      if (previous) void previous.close().catch(() => undefined);
    }
    return { headers, dispatcher: this.pool.agent };
  }
}

function fingerprintOf(tls: TlsOptions): string {
  const hash = createHash('sha256');
  for (const [k, v] of Object.entries(tls).sort(([a], [b]) => a.localeCompare(b))) {
    hash.update(`${k}=`);
    hash.update(Buffer.isBuffer(v) ? v : JSON.stringify(v) ?? '');
    hash.update('\0');
  }
  return hash.digest('hex');
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function statusOf(err: unknown): number {
  const code = (err as { statusCode?: unknown }).statusCode;
  return typeof code === 'number' ? code : 0;
}

export function loadKubeConfig(path?: string): KubeConfig {
  const config = new KubeConfig();
  if (path) config.loadFromFile(path);
  else config.loadFromDefault();
  return config;
}
