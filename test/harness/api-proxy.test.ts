// The API proxy against the shared API server: the operator's KubeClient works through it
// (plain http, bearer token), watches stream, requests are recorded with their bodies, and a
// stall holds requests until it is lifted, the client gives up, or the proxy closes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient, loadKubeConfig, type WatchEvent } from '../../operator/kube/client.ts';
import { CONFIG_MAPS, configMap as configMapIn, type ConfigMap } from '../builders.ts';
import { startApiProxy, type ApiProxy } from './api-proxy.ts';
import { connect, eventually, type TestCluster } from './cluster.ts';

let cluster: TestCluster;
let namespace: string;
let proxy: ApiProxy;
let client: KubeClient;

const configMap = (name: string, data: Record<string, string> = {}): ConfigMap => configMapIn(name, namespace, data);

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('api-proxy');
  proxy = await startApiProxy();
  client = new KubeClient(loadKubeConfig(proxy.kubeconfigPath), { qps: 100, burst: 100, fieldManager: 'ferry-test' });
});

after(async () => {
  await proxy?.close();
  await cluster?.cleanup();
});

describe('ApiProxy', () => {
  it('forwards the KubeClient\'s requests over plain http and records them with their bodies', async () => {
    assert.match(proxy.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const before = performance.timeOrigin + performance.now();
    await client.create(CONFIG_MAPS, namespace, configMap('one', { k: 'v' }));
    const read = await client.get<ConfigMap>(CONFIG_MAPS, namespace, 'one');
    assert.deepEqual(read.data, { k: 'v' });
    await client.replace(CONFIG_MAPS, { ...read, data: { k: 'w' } });
    const missing = await client.getOrUndefined(CONFIG_MAPS, namespace, 'nope');
    assert.equal(missing, undefined);

    const mine = proxy.records.filter((r) => r.path.startsWith(`/api/v1/namespaces/${namespace}/configmaps`));
    assert.deepEqual(mine.map((r) => `${r.method} ${r.status}`), ['POST 201', 'GET 200', 'PUT 200', 'GET 404']);
    assert.match(mine[0]!.path, /\?fieldManager=ferry-test$/, 'the path keeps its query');
    assert.deepEqual(JSON.parse(mine[0]!.body!).data, { k: 'v' });
    assert.deepEqual(JSON.parse(mine[2]!.body!).data, { k: 'w' });
    assert.equal(mine[1]!.body, undefined, 'no body recorded for a GET');
    for (const r of mine) assert.ok(r.at >= before && r.answeredAt! >= r.at, 'times on the test process\'s clock');
  });

  it('streams a watch', async () => {
    const list = await client.list<ConfigMap>(CONFIG_MAPS, namespace);
    const events: string[] = [];
    let done: unknown = 'open';
    const abort = await client.watch<ConfigMap>(
      CONFIG_MAPS, namespace, { resourceVersion: list.resourceVersion, timeoutSeconds: 60, idleTimeoutMs: 30_000 },
      (e: WatchEvent<ConfigMap>) => events.push(`${e.type} ${e.object.metadata.name}`),
      (err) => (done = err),
    );
    await cluster.client.create(CONFIG_MAPS, namespace, configMap('two'));
    await eventually('the watch event through the proxy', async () => (events.includes('ADDED two') ? true : undefined));
    assert.equal(done, 'open');
    const watch = proxy.records.find((r) => r.method === 'GET' && r.path.includes('watch=true'));
    assert.equal(watch?.status, 200);
    abort.abort();
  });

  it('holds stalled requests until the stall is lifted, and lets others through', async () => {
    const lift = proxy.stall((r) => r.path.includes('/configmaps/one'));
    let answered = false;
    const held = client.get<ConfigMap>(CONFIG_MAPS, namespace, 'one').then((cm) => ((answered = true), cm));
    await client.get(CONFIG_MAPS, namespace, 'two'); // not stalled
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(answered, false);
    const record = proxy.records.findLast((r) => r.path.endsWith('/configmaps/one'));
    assert.deepEqual([record?.stalled, record?.status], [true, undefined]);
    lift();
    assert.equal((await held).metadata.name, 'one');
    assert.equal(record?.status, 200);
  });

  it('drops a stalled request whose client gave up; lifting the stall does not send it', async () => {
    const lift = proxy.stall((r) => r.method === 'PUT' && r.path.includes('/configmaps/one'));
    const current = await client.get<ConfigMap>(CONFIG_MAPS, namespace, 'one');
    const aborted = client.replace(CONFIG_MAPS, { ...current, data: { k: 'never' } }, { signal: AbortSignal.timeout(300) });
    await assert.rejects(aborted, (err: Error) => err.name === 'TimeoutError');
    await eventually('the proxy to see the client go', async () => (proxy.records.findLast((r) => r.method === 'PUT')?.abandoned ? true : undefined));
    lift();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await cluster.client.get<ConfigMap>(CONFIG_MAPS, namespace, 'one')).data, { k: 'w' }, 'the dropped PUT never reached the API server');
  });

  it('a stalled watch ends with client-node\'s idle timeout (the informer\'s watchdog)', async () => {
    const lift = proxy.stall((r) => r.path.includes('watch=true'));
    const ended = new Promise<unknown>((resolve) => {
      void client.watch(CONFIG_MAPS, namespace, { resourceVersion: '', timeoutSeconds: 60, idleTimeoutMs: 500 }, () => {}, resolve);
    });
    const err = await ended;
    assert.equal((err as Error).name, 'TimeoutError');
    lift();
  });

  it('close() ends held requests and open watches', async () => {
    const other = await startApiProxy();
    const otherClient = new KubeClient(loadKubeConfig(other.kubeconfigPath), { qps: 100, burst: 100, fieldManager: 'ferry-test' });
    const list = await otherClient.list<ConfigMap>(CONFIG_MAPS, namespace);
    const watchEnded = new Promise<unknown>((resolve) => {
      void otherClient.watch(CONFIG_MAPS, namespace, { resourceVersion: list.resourceVersion, timeoutSeconds: 60, idleTimeoutMs: 30_000 }, () => {}, resolve);
    });
    await eventually('the watch to be open', async () => (other.records.some((r) => r.path.includes('watch=true') && r.status === 200) ? true : undefined));
    other.stall(() => true);
    const held = otherClient.get(CONFIG_MAPS, namespace, 'one').then(() => 'answered', (err: Error) => err.message);
    await eventually('the held request', async () => (other.records.some((r) => r.stalled) ? true : undefined));
    const closing = performance.now();
    await other.close();
    assert.equal(await held, 'fetch failed', 'the held request ends unanswered');
    await watchEnded;
    assert.ok(performance.now() - closing < 5000);
  });
});
