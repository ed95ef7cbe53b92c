// The informer's list+watch logic against a small fake of KubeClient's list() and watch():
// relists on 410 Gone (an ERROR event, or a watch that ends with 410), watches again from the
// last resourceVersion when a stream ends (client-node's idle timeout), and stops at once.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { CallOptions, ListResult, WatchEvent } from '../kube/client.ts';
import { ApiError } from '../kube/errors.ts';
import type { Resource } from '../kube/resources.ts';
import { silentLogger } from '../observability/logger.ts';
import { Informer, type ListWatchClient } from './informer.ts';

interface Thing extends KubeObject {
  data?: string;
}

interface WatchCall {
  resourceVersion: string;
  idleTimeoutMs: number;
  send(type: WatchEvent<Thing>['type'], object: Thing | Record<string, unknown>): void;
  /** Ends the stream as client-node's Watch does: `done(err)` once. */
  end(err: unknown): void;
  ended: boolean;
}

/** The API as an informer sees it: a store with resourceVersions, list() and watch(). */
class FakeApi {
  readonly objects = new Map<string, Thing>();
  version = 0;
  readonly watches: WatchCall[] = [];
  lists = 0;
  /** When set, list() fails with it. */
  listError: Error | undefined;
  /** When set, list() waits for its signal (a list in progress). */
  listHangs = false;

  put(name: string, data: string): Thing {
    const object: Thing = { apiVersion: 'v1', kind: 'Thing', metadata: { name, namespace: 'ns', resourceVersion: String(++this.version) }, data };
    this.objects.set(name, object);
    return structuredClone(object);
  }

  remove(name: string): Thing {
    const object = this.objects.get(name)!;
    this.objects.delete(name);
    return { ...structuredClone(object), metadata: { ...object.metadata, resourceVersion: String(++this.version) } };
  }

  get lastWatch(): WatchCall {
    const last = this.watches.at(-1);
    assert.ok(last, 'a watch was started');
    return last;
  }

  readonly client = {
    list: async <T>(_r: Resource, _ns?: string, _selector?: string, slim?: (item: T) => T, options: CallOptions = {}): Promise<ListResult<T>> => {
      this.lists++;
      if (this.listHangs) {
        await new Promise((_, reject) => options.signal?.addEventListener('abort', () => reject(options.signal?.reason as Error), { once: true }));
      }
      if (this.listError) throw this.listError;
      const items = [...this.objects.values()].map((o) => structuredClone(o) as unknown as T);
      return { items: slim ? items.map(slim) : items, resourceVersion: String(this.version) };
    },
    watch: async <T>(
      _r: Resource, _ns: string | undefined, params: { resourceVersion: string; idleTimeoutMs: number },
      onEvent: (event: WatchEvent<T>) => void, onDone: (err: unknown) => void,
    ): Promise<AbortController> => {
      const controller = new AbortController();
      const call: WatchCall = {
        resourceVersion: params.resourceVersion,
        idleTimeoutMs: params.idleTimeoutMs,
        ended: false,
        send: (type, object) => {
          if (!call.ended) onEvent({ type, object: structuredClone(object) as unknown as T });
        },
        end: (err) => {
          if (call.ended) return;
          call.ended = true;
          onDone(err);
        },
      };
      // Like client-node: aborting the stream ends it with an AbortError.
      controller.signal.addEventListener('abort', () => call.end(new DOMException('This operation was aborted', 'AbortError')), { once: true });
      this.watches.push(call);
      return controller;
    },
  } as unknown as ListWatchClient;
}

const flush = async () => {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

function informerOn(api: FakeApi, options: { idleTimeoutMs?: number } = {}) {
  const informer = new Informer<Thing>(api.client, { resource: { group: '', version: 'v1', plural: 'things', kind: 'Thing', namespaced: true }, ...options }, silentLogger);
  const seen: string[] = [];
  informer.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata.name}=${o.data}`),
    onUpdate: (p, o) => seen.push(`update ${o.metadata.name} ${p.data}→${o.data}`),
    onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
  });
  return { informer, seen };
}

async function started(api: FakeApi, options: { idleTimeoutMs?: number } = {}) {
  const { informer, seen } = informerOn(api, options);
  informer.start();
  await informer.waitForSync();
  await flush();
  return { informer, seen };
}

/** What the API holds while the watch is away: a changed, b deleted, c added. */
function changeWhileAway(api: FakeApi): void {
  api.put('a', 'a2');
  api.remove('b');
  api.put('c', 'c1');
}

describe('Informer', () => {
  it('lists, then watches from the list\'s resourceVersion with the idle timeout it was given', async () => {
    const api = new FakeApi();
    api.put('a', 'a1');
    const { informer, seen } = await started(api, { idleTimeoutMs: 5000 });
    assert.deepEqual(seen, ['add a=a1']);
    assert.equal(api.lastWatch.resourceVersion, '1');
    assert.equal(api.lastWatch.idleTimeoutMs, 5000, 'KubeClient.watch sets client-node\'s Watch.requestTimeoutMs to this');
    await informer.stop();
    const defaults = await started(api);
    assert.equal(api.lastWatch.idleTimeoutMs, 120_000);
    await defaults.informer.stop();
  });

  for (const [how, gone] of [
    ['an ERROR event with code 410', (w: WatchCall) => w.send('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' })],
    ['a watch that ends with statusCode 410', (w: WatchCall) => w.end(Object.assign(new Error('Gone'), { statusCode: 410 }))],
  ] as const) {
    it(`relists on 410 Gone (${how}) and tells handlers what changed meanwhile`, async () => {
      const api = new FakeApi();
      api.put('a', 'a1');
      api.put('b', 'b1');
      const { informer, seen } = await started(api);
      assert.deepEqual(seen.sort(), ['add a=a1', 'add b=b1']);
      seen.length = 0;
      changeWhileAway(api);
      const lists = api.lists;
      gone(api.lastWatch);
      await flush();
      assert.equal(api.lists, lists + 1, 'listed again');
      assert.deepEqual(seen.sort(), ['add c=c1', 'delete b', 'update a a1→a2']);
      assert.deepEqual(informer.list().map((o) => `${o.metadata.name}=${o.data}`).sort(), ['a=a2', 'c=c1']);
      assert.equal(api.lastWatch.resourceVersion, String(api.version), 'watching from the new list');
      assert.equal(api.watches.filter((w) => !w.ended).length, 1, 'one stream open');
      await informer.stop();
    });
  }

  it('watches again from the last resourceVersion when a stream ends by the idle timeout, without relisting', async () => {
    const api = new FakeApi();
    api.put('a', 'a1');
    const { informer, seen } = await started(api, { idleTimeoutMs: 1000 });
    const first = api.lastWatch;
    first.send('MODIFIED', api.put('a', 'a2'));
    first.send('BOOKMARK', { kind: 'Thing', metadata: { resourceVersion: '7' } });
    // client-node's Watch aborts a stream silent for requestTimeoutMs and reports a TimeoutError.
    first.end(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
    await flush();
    assert.equal(api.lists, 1, 'no relist');
    assert.equal(api.watches.length, 2);
    assert.equal(api.lastWatch.resourceVersion, '7', 'from the bookmark');
    assert.deepEqual(seen, ['add a=a1', 'update a a1→a2']);
    // A server that closes the stream (its timeoutSeconds) is the same: watch again.
    api.lastWatch.end(null);
    await flush();
    assert.equal(api.watches.length, 3);
    assert.equal(api.lastWatch.resourceVersion, '7');
    await informer.stop();
  });

  it('applies events in order: add, update, delete; ignores an event older than the cache', async () => {
    const api = new FakeApi();
    const { informer, seen } = await started(api);
    const w = api.lastWatch;
    const a1 = api.put('a', 'a1');
    w.send('ADDED', a1);
    w.send('MODIFIED', api.put('a', 'a2'));
    w.send('MODIFIED', a1); // stale
    w.send('DELETED', api.remove('a'));
    assert.deepEqual(seen, ['add a=a1', 'update a a1→a2', 'delete a']);
    assert.equal(informer.size, 0);
    await informer.stop();
  });

  it('retries a failed list with backoff, and stop() returns at once from the retry sleep', async (t: TestContext) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const api = new FakeApi();
    api.listError = new ApiError('GET', '/api/v1/things', 503, 'ServiceUnavailable', 'down');
    const { informer } = informerOn(api);
    informer.start();
    await flush();
    assert.equal(api.lists, 1);
    t.mock.timers.tick(499);
    await flush();
    assert.equal(api.lists, 1, 'sleeping 500 ms after the first failure');
    t.mock.timers.tick(1);
    await flush();
    assert.equal(api.lists, 2, 'retried');
    // Now in a 1 s sleep; time does not move, and stop() must not wait for it.
    let stopped = false;
    void informer.stop().then(() => (stopped = true));
    await flush();
    assert.equal(stopped, true, 'stop() returned without the sleep running out');
    assert.equal(api.lists, 2);
  });

  it('stop() ends a list in progress', async () => {
    const api = new FakeApi();
    api.listHangs = true;
    const { informer } = informerOn(api);
    informer.start();
    await flush();
    let stopped = false;
    void informer.stop().then(() => (stopped = true));
    await flush();
    assert.equal(stopped, true);
    assert.equal(api.watches.length, 0, 'no watch after a stop');
  });

  it('stop() ends the open watch', async () => {
    const api = new FakeApi();
    const { informer } = await started(api);
    await informer.stop();
    assert.equal(api.lastWatch.ended, true);
    assert.equal(api.watches.length, 1, 'not watched again');
  });
});
