// Crash and failover against the real API server: an operator killed mid-run is replaced and
// the run completes with exactly one Pod per step attempt; of two replicas only the leader acts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pod } from '../../operator/kube/pod.ts';
import { LEASES, PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

let cluster: TestCluster;
let namespace: string;
let kubelet: FakeKubelet;
const operators: OperatorProcess[] = [];

const linear = (n: number) => Array.from({ length: n }, (_, i) => step(`s${i + 1}`, i > 0 ? { dependsOn: [`s${i}`] } : {}));

function operator(): OperatorProcess {
  const op = startOperator({ kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace, failover: true });
  operators.push(op);
  return op;
}

const finished = (name: string) => waitForRun(cluster, namespace, name);

const podNames = async (run: string) =>
  (await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${run}`)).items.map((p) => p.metadata.name).sort();

const controllerStarted = (op: OperatorProcess) => op.logs.some((l) => l.msg === 'controller started');
const actedOn = (op: OperatorProcess, run: string) => op.logs.some((l) => l.msg === 'run phase changed' && l.name === run);

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('resilience');
  kubelet = new FakeKubelet(cluster.client, namespace, () => ({ outcome: 'succeed', afterMs: 400 })).start();
  await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'chain', namespace, steps: linear(6) }));
});

after(async () => {
  await kubelet?.stop();
  await Promise.all(operators.map((o) => o.kill()));
  await cluster?.cleanup();
});

describe('resilience', () => {
  it('finishes a run after the operator is killed mid-run, with one Pod per step attempt', async () => {
    const first = operator();
    await first.waitForLog((l) => l.msg === 'controller started');
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'crash-1', namespace, pipeline: 'chain', cachePolicy: 'Disabled' }));
    await eventually('step s3 to start', async () => (kubelet.seen.has('crash-1-s3-1') ? true : undefined));
    await first.kill();
    const second = operator();
    await second.waitForLog((l) => l.msg === 'controller started', 30_000);
    const run = await finished('crash-1');
    assert.equal(run.status?.phase, 'Succeeded');
    assert.deepEqual(await podNames('crash-1'), ['crash-1-s1-1', 'crash-1-s2-1', 'crash-1-s3-1', 'crash-1-s4-1', 'crash-1-s5-1', 'crash-1-s6-1']);
    assert.ok(run.status?.steps?.every((s) => s.attempts === 1), 'no step needed a second attempt');
    await second.stop();
  });

  it('lets only the leader act when two replicas run, and fails over when the leader dies', async () => {
    const a = operator();
    const b = operator();
    await Promise.all([a, b].map((op) => op.waitForLog((l) => l.msg === 'caches synced')));
    const leader = await eventually('a leader', async () => [a, b].find(controllerStarted));
    const standby = leader === a ? b : a;
    const lease = await cluster.client.get<{ spec: { holderIdentity: string } }>(LEASES, namespace, 'ferry');
    const leaderIdentity = leader.logs.find((l) => l.msg === 'operator starting')?.identity;
    assert.equal(lease.spec.holderIdentity, leaderIdentity);

    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'ha-1', namespace, pipeline: 'chain', cachePolicy: 'Disabled' }));
    assert.equal((await finished('ha-1')).status?.phase, 'Succeeded');
    assert.ok(actedOn(leader, 'ha-1'), 'the leader reconciled the run');
    assert.ok(!controllerStarted(standby), 'the standby never started its controllers');
    assert.ok(!actedOn(standby, 'ha-1'), 'the standby never touched the run');
    assert.ok(standby.logs.some((l) => l.msg === 'waiting for leadership'));

    await leader.kill();
    await standby.waitForLog((l) => l.msg === 'became leader', 20_000);
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'ha-2', namespace, pipeline: 'chain', cachePolicy: 'Disabled' }));
    assert.equal((await finished('ha-2')).status?.phase, 'Succeeded');
    assert.ok(actedOn(standby, 'ha-2'));
    assert.deepEqual((await podNames('ha-2')).length, 6);
    await standby.stop();
  });

  it('hands the Lease over at once when the leader stops gracefully', async () => {
    const a = operator();
    await a.waitForLog((l) => l.msg === 'controller started', 20_000);
    const b = operator();
    await b.waitForLog((l) => l.msg === 'waiting for leadership');
    assert.equal(await a.stop(), 0, 'SIGTERM exits 0');
    const started = Date.now();
    await b.waitForLog((l) => l.msg === 'became leader', 10_000);
    // The released Lease has a 1 s duration, so the standby does not wait a full lease (4 s here).
    assert.ok(Date.now() - started < 4000, `took over in ${Date.now() - started} ms`);
  });
});
