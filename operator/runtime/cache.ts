// One kind's informers across the namespaces the operator watches (one informer for all
// namespaces, or one per listed namespace), read through a single interface. `I` names the
// cache's secondary indexes, so a lookup in an index the cache does not keep is a type error.
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { KubeClient } from '../kube/client.ts';
import type { Logger } from '../observability/logger.ts';
import { Informer, type Indexers, type InformerHandlers, type InformerOptions } from './informer.ts';

export class Cache<T extends KubeObject, I extends string = never> {
  private readonly informers = new Map<string, Informer<T>>(); // by namespace; '' = all

  constructor(
    client: KubeClient, namespaces: string[], options: Omit<InformerOptions<T>, 'namespace' | 'indexes'> & { indexes?: Record<I, Indexers<T>[string]> }, log: Logger,
  ) {
    const scopes = namespaces.length > 0 ? namespaces : [''];
    for (const namespace of scopes) {
      this.informers.set(namespace, new Informer<T>(client, { ...options, ...(namespace ? { namespace } : {}) }, log));
    }
  }

  addHandlers(handlers: InformerHandlers<T>): void {
    for (const informer of this.informers.values()) informer.addHandlers(handlers);
  }

  start(): void {
    for (const informer of this.informers.values()) informer.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }

  async waitForSync(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.waitForSync()));
  }

  hasSynced(): boolean {
    return [...this.informers.values()].every((i) => i.hasSynced());
  }

  /** `namespace/name` */
  get(key: string): T | undefined {
    return this.informerFor(key.split('/')[0] ?? '')?.get(key);
  }

  byIndex(index: I, value: string): T[] {
    return [...this.informers.values()].flatMap((i) => i.byIndex(index, value));
  }

  list(): T[] {
    return [...this.informers.values()].flatMap((i) => i.list());
  }

  get size(): number {
    let n = 0;
    for (const informer of this.informers.values()) n += informer.size;
    return n;
  }

  recordWrite(object: T, options: { announce?: boolean } = {}): void {
    this.informerFor(object.metadata.namespace ?? '')?.recordWrite(object, options);
  }

  recordCreate(object: T, options: { announce?: boolean } = {}): void {
    this.informerFor(object.metadata.namespace ?? '')?.recordCreate(object, options);
  }

  private informerFor(namespace: string): Informer<T> | undefined {
    return this.informers.get(namespace) ?? this.informers.get('');
  }
}
