// A list+watch cache of one kind in one namespace (or all): lists, then watches from the
// list's resourceVersion with bookmarks; relists on 410 Gone; restarts a watch that went
// silent (watchdog); strips managedFields and what else the owner says it never reads; keeps
// optional secondary indexes; tells handlers about adds, updates and deletes. Reads come from
// here, writes go to the API. stop() interrupts a retry sleep and a relist at once.
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { KubeClient, WatchEvent } from '../kube/client.ts';
import { errorMessage } from '../kube/errors.ts';
import type { Resource } from '../kube/resources.ts';
import type { Logger } from '../observability/logger.ts';
import { sleep } from './clock.ts';

export interface InformerHandlers<T> {
  onAdd?(object: T): void;
  onUpdate?(previous: T, current: T): void;
  onDelete?(object: T): void;
}

/** What an informer needs of the API: KubeClient's list and watch. */
export type ListWatchClient = Pick<KubeClient, 'list' | 'watch'>;

/** Index name → the values an object is filed under in that index. */
export type Indexers<T> = Record<string, (object: T) => string[]>;

export interface InformerOptions<T> {
  resource: Resource;
  namespace?: string;
  labelSelector?: string;
  /** Named secondary indexes: for each name, the values an object is found under by byIndex(name, value). */
  indexes?: Indexers<T>;
  /** A watch stream that delivers nothing (not even a bookmark) for this long is restarted. */
  idleTimeoutMs?: number;
  /**
   * Slims an object before it is cached (controller-runtime's TransformFunc): drop what no
   * reader uses, since the cache holds every object for as long as it exists.
   */
  transform?: (object: T) => T;
}

export const objectKey = (o: KubeObject): string =>
  o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;

/** Compares resourceVersions as integers where they are (etcd's are); unknown forms compare unequal. */
function isNewer(candidate: KubeObject, current: KubeObject | undefined): boolean {
  if (!current) return true;
  const a = Number(candidate.metadata.resourceVersion);
  const b = Number(current.metadata.resourceVersion);
  return Number.isFinite(a) && Number.isFinite(b) ? a > b : candidate.metadata.resourceVersion !== current.metadata.resourceVersion;
}

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  /** index name → value → key → object */
  private readonly indexed = new Map<string, Map<string, Map<string, T>>>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly options: InformerOptions<T>;
  private readonly client: ListWatchClient;
  private readonly log: Logger;
  private resourceVersion = '';
  private synced = false;
  private stopped = false;
  /** Aborted by stop(): ends a retry sleep and a relist in progress. */
  private readonly stopping = new AbortController();
  private watchAbort: AbortController | undefined;
  private syncWaiters: Array<() => void> = [];
  private loop: Promise<void> | undefined;

  constructor(client: ListWatchClient, options: InformerOptions<T>, log: Logger) {
    this.client = client;
    this.options = options;
    this.log = log.child({ informer: options.resource.plural, namespace: options.namespace ?? '*' });
  }

  addHandlers(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    this.watchAbort?.abort();
    await this.loop;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  byIndex(index: string, value: string): T[] {
    return [...(this.indexed.get(index)?.get(value)?.values() ?? [])];
  }

  get size(): number {
    return this.store.size;
  }

  /** Takes in an object this process just wrote, so the next read does not see an older one. */
  /**
   * Takes in what this process just wrote, so the next reconcile does not read it stale. The
   * watch's event for it is then a no-op; with `announce` the handlers hear of the update now
   * (another controller derives its status from this object's).
   */
  recordWrite(object: T, options: { announce?: boolean } = {}): void {
    const key = objectKey(object);
    const current = this.store.get(key);
    if (!current || !isNewer(object, current)) return;
    if (options.announce) this.apply(key, this.slim(object));
    else this.put(key, this.slim(object));
  }

  /**
   * Takes in an object this process just created, so that a reconcile running before the watch
   * delivers it does not create it again (a POST answered AlreadyExists, then a GET). Only while
   * the watch is behind the create: once the watch has passed its resourceVersion, the cache
   * already holds the object, or saw it deleted. The watch's ADDED event for it is then a no-op,
   * so with `announce` the handlers are told of the add now, as the watch would have: another
   * controller may own the object (a ModelVersion a run registered). Without it they are not
   * (a step Pod: the pass that created it is its owner's own).
   */
  recordCreate(object: T, options: { announce?: boolean } = {}): void {
    const key = objectKey(object);
    const created = Number(object.metadata.resourceVersion);
    const watched = Number(this.resourceVersion);
    if (this.store.has(key) || !Number.isFinite(created) || !Number.isFinite(watched) || created <= watched) return;
    if (options.announce) this.apply(key, this.slim(object));
    else this.put(key, this.slim(object));
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        failures = 0;
        await this.watchOnce();
      } catch (err) {
        if (this.stopped) return;
        failures++;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
        this.log.warn('watch failed', { error: errorMessage(err), retryInMs: delay });
        await sleep(delay, this.stopping.signal);
      }
    }
  }

  private async relist(): Promise<void> {
    const { resource, namespace, labelSelector } = this.options;
    const { items, resourceVersion } = await this.client.list<T>(
      resource, namespace, labelSelector, (item) => this.slim(item), { signal: this.stopping.signal },
    );
    const seen = new Set<string>();
    for (const item of items) {
      const key = objectKey(item);
      seen.add(key);
      this.apply(key, item);
    }
    for (const [key, object] of this.store) {
      if (!seen.has(key)) this.remove(key, object);
    }
    this.resourceVersion = resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const wake of this.syncWaiters.splice(0)) wake();
      this.log.info('informer synced', { objects: this.store.size });
    }
  }

  /** Runs one watch stream to its end; clears resourceVersion when a relist is needed. */
  private watchOnce(): Promise<void> {
    const { resource, namespace, labelSelector } = this.options;
    return new Promise<void>((resolve, reject) => {
      const onEvent = (event: WatchEvent<T>) => {
        if (event.type === 'ERROR') {
          const status = event.object as unknown as { code?: number; message?: string };
          if (status.code === 410) this.resourceVersion = '';
          else this.log.warn('watch error event', { code: status.code, message: status.message });
          this.watchAbort?.abort();
          return;
        }
        const object = event.object;
        this.resourceVersion = object.metadata.resourceVersion ?? this.resourceVersion;
        if (event.type === 'BOOKMARK') return;
        const key = objectKey(object);
        if (event.type === 'DELETED') {
          const current = this.store.get(key);
          if (current) this.remove(key, current);
        } else {
          this.apply(key, this.slim(object));
        }
      };
      const onDone = (err: unknown) => {
        this.watchAbort = undefined;
        const code = (err as { statusCode?: number } | null)?.statusCode;
        if (code === 410) this.resourceVersion = '';
        if (err && !this.stopped && code !== 410 && !isAbort(err)) reject(err);
        else resolve();
      };
      this.client
        .watch<T>(
          resource,
          namespace,
          {
            resourceVersion: this.resourceVersion,
            labelSelector,
            // Servers close watches after this; spreading it avoids synchronized re-watches.
            timeoutSeconds: 300 + Math.floor(Math.random() * 300),
            idleTimeoutMs: this.options.idleTimeoutMs ?? 120_000,
          },
          onEvent,
          onDone,
        )
        .then((abort) => {
          this.watchAbort = abort;
          if (this.stopped) abort.abort();
        }, reject);
    });
  }

  private apply(key: string, object: T): void {
    const previous = this.store.get(key);
    if (previous && previous.metadata.resourceVersion === object.metadata.resourceVersion) return;
    if (previous && !isNewer(object, previous)) return;
    this.put(key, object);
    for (const h of this.handlers) {
      if (previous) h.onUpdate?.(previous, object);
      else h.onAdd?.(object);
    }
  }

  private slim(object: T): T {
    const stripped = strip(object);
    return this.options.transform ? this.options.transform(stripped) : stripped;
  }

  private put(key: string, object: T): void {
    const previous = this.store.get(key);
    if (previous) this.unindex(key, previous);
    this.store.set(key, object);
    for (const [index, valuesOf] of Object.entries(this.options.indexes ?? {})) {
      let byValue = this.indexed.get(index);
      if (!byValue) this.indexed.set(index, (byValue = new Map()));
      for (const value of valuesOf(object)) {
        let bucket = byValue.get(value);
        if (!bucket) byValue.set(value, (bucket = new Map()));
        bucket.set(key, object);
      }
    }
  }

  private remove(key: string, object: T): void {
    this.unindex(key, object);
    this.store.delete(key);
    for (const h of this.handlers) h.onDelete?.(object);
  }

  private unindex(key: string, object: T): void {
    for (const [index, valuesOf] of Object.entries(this.options.indexes ?? {})) {
      const byValue = this.indexed.get(index);
      for (const value of valuesOf(object)) {
        const bucket = byValue?.get(value);
        bucket?.delete(key);
        if (bucket?.size === 0) byValue?.delete(value);
      }
    }
  }
}

function strip<T extends KubeObject>(object: T): T {
  const metadata = object.metadata as T['metadata'] & { managedFields?: unknown };
  if (metadata.managedFields) delete metadata.managedFields;
  return object;
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}
