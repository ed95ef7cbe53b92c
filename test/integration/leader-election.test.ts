// Leadership cannot overlap, against the real API server: two operators, each behind its own
// ApiProxy; while a run is in flight the leader's Lease requests stop being answered (and only
// those: its other requests pass, so an unfenced leader would keep writing). On the test
// process's one clock, the old leader's last write is answered before the new leader's first
// Lease acquire arrives, and the run still ends with one Pod per step attempt.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { startApiProxy, type ApiProxy } from '../harness/api-proxy.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

const STEPS = 8;
const RUN = 'overlap-1';

let cluster: TestCluster;
let namespace: string;
let kubelet: FakeKubelet;
const proxies: ApiProxy[] = [];
const operators: OperatorProcess[] = [];

const linear = (n: number) => Array.from({ length: n }, (_, i) => step(`s${i + 1}`, i > 0 ? { dependsOn: [`s${i}`] } : {}));

const isLease = (r: { path: string }) => r.path.includes('/apis/coordination.k8s.io/v1/') && r.path.includes('/leases');
const isWrite = (r: { method: string }) => r.method === 'POST' || r.method === 'PUT' || r.method === 'PATCH' || r.method === 'DELETE';

async function replica(): Promise<{ proxy: ApiProxy; operator: OperatorProcess }> {
  const proxy = await startApiProxy(cluster.kubeconfigPath);
  proxies.push(proxy);
  const operator = startOperator({ kubeconfigPath: proxy.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace, failover: true });
  operators.push(operator);
  return { proxy, operator };
}

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('leader-election');
  kubelet = new FakeKubelet(cluster.client, namespace, () => ({ outcome: 'succeed', afterMs: 500 })).start();
  await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'chain', namespace, steps: linear(STEPS) }));
});

after(async () => {
  await kubelet?.stop();
  await Promise.all(operators.map((o) => o.kill()));
  await Promise.all(proxies.map((p) => p.close()));
  await cluster?.cleanup();
});

describe('leader election', () => {
  it('a leader whose Lease requests go unanswered stops writing before the standby acquires; the run ends with one Pod per step attempt', async (t) => {
    const replicas = [await replica(), await replica()];
    await Promise.all(replicas.map(({ operator }) => operator.waitForLog((l) => l.msg === 'caches synced')));
    const old = await eventually('a leader', async () => replicas.find(({ operator }) => operator.logs.some((l) => l.msg === 'controller started')), 30_000);
    const next = replicas.find((r) => r !== old)!;

    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: RUN, namespace, pipeline: 'chain', cachePolicy: 'Disabled' }));
    await eventually('step s2 to start', async () => (kubelet.seen.has(`${RUN}-s2-1`) ? true : undefined), 60_000);

    // From here on the old leader's Lease requests get no answer; everything else still passes.
    const stalledAt = performance.timeOrigin + performance.now();
    old.proxy.stall(isLease);
    await next.operator.waitForLog((l) => l.msg === 'became leader', 60_000);

    const run = await waitForRun(cluster, namespace, RUN, { timeoutMs: 120_000, operatorLogs: next.operator.logs });
    assert.equal(run.status?.phase, 'Succeeded');

    const oldWrites = old.proxy.records.filter((r) => isWrite(r) && !isLease(r));
    const writesWhileStalled = oldWrites.filter((r) => r.at > stalledAt);
    assert.ok(writesWhileStalled.length > 0, 'the old leader went on writing while its Lease was stalled (the test exercises the fence)');
    const lastOldWrite = oldWrites.at(-1)!;
    // Unanswered writes (its process exited) count from when they reached the proxy.
    const lastOldWriteDone = Math.max(...oldWrites.map((r) => r.answeredAt ?? r.at));
    const acquire = next.proxy.records.find((r) => isLease(r) && (r.method === 'PUT' || r.method === 'POST') && (r.status === 200 || r.status === 201));
    assert.ok(acquire, 'the new leader acquired the Lease through its proxy');
    const gapMs = acquire.at - lastOldWriteDone;
    t.diagnostic(`old leader's last write ${lastOldWrite.method} ${lastOldWrite.path.replace(/\?.*/, '')} answered ${lastOldWriteDone.toFixed(1)}; ` +
      `new leader's first acquire ${acquire.method} arrived ${acquire.at.toFixed(1)}: gap ${gapMs.toFixed(1)} ms (overlap ${Math.max(0, -gapMs).toFixed(1)} ms); ` +
      `stall began ${(lastOldWriteDone - stalledAt).toFixed(1)} ms before the last old write, ${(acquire.at - stalledAt).toFixed(1)} ms before the acquire; ` +
      `old leader writes while stalled: ${writesWhileStalled.length}, writes it fenced: ${old.operator.logs.filter((l) => String(l.error ?? '').includes('write fenced')).length}`);
    assert.ok(gapMs > 0, `the old leader's last write (answered at ${lastOldWriteDone}) came before the new leader's acquire (${acquire.at}): overlap ${-gapMs} ms`);
    assert.ok(next.proxy.records.some((r) => isWrite(r) && !isLease(r) && r.at > acquire.at), 'the new leader acted after it acquired');
    const lost = old.operator.logs.find((l) => l.msg === 'lost leadership');
    assert.ok(lost && old.operator.logs.some((l) => l.msg === 'lost leadership; exiting'), 'the old leader stepped down and exited');
    assert.equal(lost.reason, 'the renew deadline passed');

    const pods = (await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${RUN}`)).items.map((p) => p.metadata.name).sort();
    assert.deepEqual(pods, Array.from({ length: STEPS }, (_, i) => `${RUN}-s${i + 1}-1`).sort());
    const final = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, RUN);
    assert.ok(final.status?.steps?.every((s) => s.attempts === 1), 'no step needed a second attempt');
  });
});
