// KubeClient's write fence and per-request signal against the real API server, seen through an
// ApiProxy: a fenced write is refused before anything is sent while reads and watches go on; a
// signal aborts a request the server does not answer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { FencedError } from '../../operator/kube/errors.ts';
import { CONFIG_MAPS, configMap as configMapIn, type ConfigMap } from '../builders.ts';
import { startApiProxy, type ApiProxy } from '../harness/api-proxy.ts';
import { connect, eventually, type TestCluster } from '../harness/cluster.ts';

let cluster: TestCluster;
let namespace: string;
let proxy: ApiProxy;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('kube-client');
  proxy = await startApiProxy(cluster.kubeconfigPath);
});

after(async () => {
  await proxy?.close();
  await cluster?.cleanup();
});

const configMap = (name: string): ConfigMap => configMapIn(name, namespace);

describe('KubeClient', () => {
  it('sends writes only while the fence is open; reads and watches go on behind a closed fence', async () => {
    let open = true;
    const client = new KubeClient(loadKubeConfig(proxy.kubeconfigPath), { qps: 100, burst: 100, fieldManager: 'ferry-test', fence: () => open });
    const created = await client.create(CONFIG_MAPS, namespace, configMap('fenced'));
    open = false;
    const writes = proxy.records.filter((r) => r.method !== 'GET').length;
    const refused = [
      client.create(CONFIG_MAPS, namespace, configMap('never')),
      client.replace(CONFIG_MAPS, { ...created, data: { k: 'w' } }),
      client.replaceStatus(CONFIG_MAPS, created),
      client.mergePatch(CONFIG_MAPS, namespace, 'fenced', { data: { k: 'x' } }),
      client.delete(CONFIG_MAPS, namespace, 'fenced'),
    ];
    for (const attempt of refused) {
      await assert.rejects(attempt, (err: unknown) => err instanceof FencedError && /write fenced/.test(err.message));
    }
    assert.equal(proxy.records.filter((r) => r.method !== 'GET').length, writes, 'nothing was sent');

    assert.deepEqual((await client.get<ConfigMap>(CONFIG_MAPS, namespace, 'fenced')).data, { k: 'v' });
    const list = await client.list<ConfigMap>(CONFIG_MAPS, namespace);
    assert.deepEqual(list.items.map((c) => c.metadata.name), ['fenced']);
    const seen: string[] = [];
    const watch = await client.watch<ConfigMap>(
      CONFIG_MAPS, namespace, { resourceVersion: list.resourceVersion, timeoutSeconds: 60, idleTimeoutMs: 30_000 },
      (e) => seen.push(`${e.type} ${e.object.metadata.name}`), () => {},
    );
    await cluster.client.create(CONFIG_MAPS, namespace, configMap('other'));
    await eventually('a watch event behind a closed fence', async () => (seen.includes('ADDED other') ? true : undefined));
    watch.abort();

    open = true;
    await client.mergePatch(CONFIG_MAPS, namespace, 'fenced', { data: { k: 'y' } });
    assert.deepEqual((await cluster.client.get<ConfigMap>(CONFIG_MAPS, namespace, 'fenced')).data, { k: 'y' });
  });

  it('aborts a request that gets no answer when its signal fires', async () => {
    const client = new KubeClient(loadKubeConfig(proxy.kubeconfigPath), { qps: 100, burst: 100, fieldManager: 'ferry-test' });
    const lift = proxy.stall((r) => r.path.endsWith('/configmaps/fenced'));
    const started = performance.now();
    await assert.rejects(
      client.get(CONFIG_MAPS, namespace, 'fenced', { signal: AbortSignal.timeout(200) }),
      (err: Error) => err.name === 'TimeoutError',
    );
    assert.ok(performance.now() - started < 10_000, 'not the client\'s 60 s timeout');
    const controller = new AbortController();
    const pending = client.getOrUndefined(CONFIG_MAPS, namespace, 'fenced', { signal: controller.signal });
    controller.abort(new DOMException('the renew deadline passed', 'TimeoutError'));
    await assert.rejects(pending, (err: Error) => err.message === 'the renew deadline passed');
    lift();
  });

  it('cuts off a write already sent when the fence closes, and it never lands', async () => {
    let term = new AbortController();
    const client = new KubeClient(loadKubeConfig(proxy.kubeconfigPath), {
      qps: 100, burst: 100, fieldManager: 'ferry-test', fence: () => !term.signal.aborted, fenceSignal: () => term.signal,
    });
    const lift = proxy.stall((r) => r.method === 'POST' && r.path.includes('/configmaps'));
    const pending = client.create(CONFIG_MAPS, namespace, configMap('in-flight'));
    await eventually('the write reached the proxy', async () => (proxy.records.some((r) => r.stalled && r.method === 'POST') ? true : undefined));
    term.abort(new DOMException('the renew deadline passed', 'TimeoutError'));
    await assert.rejects(pending, (err: Error) => err.message === 'the renew deadline passed');
    // The client closed the connection: the proxy sees its held request abandoned (on a busy
    // machine a moment later), and then drops it instead of forwarding it when the stall lifts.
    await eventually('the proxy saw the abandoned write', async () =>
      (proxy.records.some((r) => r.method === 'POST' && r.path.includes('/configmaps') && r.abandoned) ? true : undefined));
    lift();
    assert.equal(await cluster.client.getOrUndefined(CONFIG_MAPS, namespace, 'in-flight'), undefined);
    term = new AbortController(); // a new term: writes go again, reads never stopped
    await client.create(CONFIG_MAPS, namespace, configMap('next-term'));
    assert.ok(await cluster.client.getOrUndefined(CONFIG_MAPS, namespace, 'next-term'));
  });
});
