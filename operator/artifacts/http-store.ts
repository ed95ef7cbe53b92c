// The operator's side of the artifact server: a file:// store reached over HTTP with requests
// it signs itself (it holds the signing key), and the signed URLs it hands to step Pods. URIs
// and keys are those of the file store the server serves, so status and lineage read the same
// whichever process touches the bytes.
import type { Readable } from 'node:stream';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { FileArtifactStore, checkKey, checkPrefix } from './file-store.ts';
import { signedUrl, type UrlGrant } from './signed-urls.ts';
import {
  ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, collectAtMost,
  type ArtifactStore, type Grant, type ObjectGrants, type StoredObject,
} from './store.ts';

/** How long the operator's own requests are signed for: each is made at once. */
const OWN_REQUEST_SECONDS = 300;

export class HttpArtifactStore implements ArtifactStore, ObjectGrants {
  readonly root: string;
  readonly grants: ObjectGrants = this;
  /** Maps URIs to keys like the served store does; it does no I/O. */
  private readonly layout: FileArtifactStore;
  private readonly serverUrl: string;
  private readonly signingKey: Buffer;

  /** `rootUri` is the served store's file:// root; `serverUrl` where the artifact server listens. */
  constructor(rootUri: string, serverUrl: string, signingKey: Buffer) {
    this.layout = new FileArtifactStore(rootUri);
    this.root = this.layout.root;
    this.serverUrl = serverUrl;
    this.signingKey = signingKey;
  }

  uriFor(key: string): string {
    return this.layout.uriFor(key);
  }

  keyOf(uri: string): string {
    return this.layout.keyOf(uri);
  }

  readGrant(uri: string, expiresAt: Date): Grant {
    return { url: this.url({ method: 'GET', key: this.keyOf(uri), expiresAt: seconds(expiresAt) }) };
  }

  createGrant(key: string, expiresAt: Date): Grant {
    this.layout.uriFor(key); // checks the key
    return { url: this.url({ method: 'PUT', key, expiresAt: seconds(expiresAt) }) };
  }

  async putBlob(namespace: string, source: Readable): Promise<StoredObject> {
    checkKey(namespace, this.root); // here, like the other stores, not as an HTTP 500 from the server
    const res = await this.request('POST', this.own('BLOB', namespace), { body: source, context: `putBlob into ${namespace}` });
    return (await res.body.json()) as StoredObject;
  }

  async createOnce(key: string, data: Uint8Array): Promise<StoredObject> {
    const uri = this.uriFor(key);
    const res = await this.request('PUT', this.own('PUT', key), { body: data, context: `createOnce ${uri}`, uri });
    return (await res.body.json()) as StoredObject;
  }

  async read(uri: string): Promise<Readable> {
    const res = await this.request('GET', this.own('GET', this.keyOf(uri)), { context: `read ${uri}`, uri });
    return res.body;
  }

  async readAll(uri: string, maxBytes: number): Promise<Buffer> {
    const res = await this.request('GET', this.own('GET', this.keyOf(uri)), { context: `readAll ${uri}`, uri });
    const body = res.body;
    // NOTE: a body destroyed before its end emits an abort error; nothing else listens for it here.
    const discard = () => body.on('error', () => undefined).destroy();
    if (Number(res.headers['content-length'] ?? 0) > maxBytes) {
      discard();
      throw new ObjectTooLargeError(uri, maxBytes);
    }
    return collectAtMost(body, maxBytes, uri, discard);
  }

  async exists(uri: string): Promise<boolean> {
    try {
      (await this.request('HEAD', this.own('GET', this.keyOf(uri)), { context: `exists ${uri}`, uri })).body.resume();
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix, this.root);
    const res = await this.request('GET', this.own('LIST', prefix), { context: `list ${this.root} prefix ${JSON.stringify(prefix)}` });
    return ((await res.body.json()) as { keys: string[] }).keys;
  }

  async delete(uri: string): Promise<void> {
    await this.request('DELETE', this.own('DELETE', this.keyOf(uri)), { context: `delete ${uri}`, uri }).then((res) => res.body.resume(), (err: unknown) => {
      if (!(err instanceof ObjectNotFoundError)) throw err;
    });
  }

  private own(method: UrlGrant['method'], key: string): string {
    return this.url({ method, key, expiresAt: Math.floor(Date.now() / 1000) + OWN_REQUEST_SECONDS });
  }

  private url(grant: UrlGrant): string {
    return signedUrl(this.serverUrl, this.signingKey, grant);
  }

  /**
   * One signed request. NOTE: undici's request, not fetch: fetch reads a Node stream body
   * ahead without bound (a 1 GiB upload peaked at 1.1 GiB), request streams with backpressure.
   */
  private async request(method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE', url: string, options: { body?: Readable | Uint8Array; context: string; uri?: string }): Promise<Dispatcher.ResponseData> {
    let res: Dispatcher.ResponseData;
    try {
      res = await undiciRequest(url, { method, ...(options.body !== undefined ? { body: options.body } : {}) });
    } catch (err) {
      throw new Error(`${options.context}: artifact server ${this.serverUrl} unreachable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    const text = (await res.body.text().catch(() => '')).trim();
    if (res.statusCode === 404 && options.uri) throw new ObjectNotFoundError(options.uri);
    if (res.statusCode === 412 && options.uri) throw new ObjectExistsError(options.uri);
    throw new Error(`${options.context}: artifact server answered HTTP ${res.statusCode}${text ? `: ${text}` : ''}`);
  }
}

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);
