// A forEach of 5,000 items against the real API server (the fake kubelet plays each Pod): every
// item runs once, never more than maxParallelism at once, and the run's status stays small (an
// entry per step, counts for the items). One item in ten fails: with minSuccessRatio 0.8 the
// step succeeds, with 0.95 it fails as soon as the ratio cannot be reached.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LABEL_ITEM, LABEL_RUN } from '../../operator/api/v1alpha1/labels.ts';
import { PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet, type SeenPod } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

const ITEMS = 5000;
const MAX_PARALLELISM = 100;

let cluster: TestCluster;
let namespace: string;
let storeDir: string;
let operator: OperatorProcess;
let kubelet: FakeKubelet;
const runOf = new Map<string, string>();

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('fanout');
  storeDir = await mkdtemp(join(tmpdir(), 'ferry-fanout-store-'));
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: {
      FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_API_QPS: '150', FERRY_API_BURST: '300', FERRY_LOG_LEVEL: 'info',
    },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  // Every tenth item fails.
  kubelet = new FakeKubelet(cluster.client, namespace, (pod) => {
    runOf.set(pod.metadata.name, pod.metadata.labels?.[LABEL_RUN] ?? '');
    const index = Number(pod.metadata.labels?.[LABEL_ITEM] ?? -1);
    return index % 10 === 9 ? { outcome: 'fail', exitCode: 2, message: `item ${index} diverged` } : { outcome: 'succeed', afterMs: 20 };
  }).start(250);
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await cluster?.cleanup();
  await rm(storeDir, { recursive: true, force: true });
});

/** The most item Pods of a run that were running at one time, from when the kubelet saw each start and end. */
function peakConcurrency(pods: SeenPod[]): number {
  const edges = pods.flatMap((p) => [{ at: p.seenAt, delta: 1 }, { at: p.finishedAt ?? Infinity, delta: -1 }]).sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let peak = 0;
  for (const e of edges) peak = Math.max(peak, (now += e.delta));
  return peak;
}

const fanOut = (name: string, items: number, minSuccessRatio: number) => pipeline({ name, namespace, steps: [
  step('each', { forEach: { items: Array.from({ length: items }, (_, i) => i), maxParallelism: MAX_PARALLELISM, minSuccessRatio }, args: ['$(item)'] }),
] });

describe(`a forEach of ${ITEMS} items`, () => {
  it(`runs every item once within maxParallelism ${MAX_PARALLELISM}, with a small status, and succeeds with minSuccessRatio 0.8`, async () => {
    await cluster.client.create(PIPELINES, namespace, fanOut('wide', ITEMS, 0.8));
    const started = Date.now();
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'wide-1', namespace, pipeline: 'wide' }));
    const run = await waitForRun(cluster, namespace, 'wide-1', { operatorLogs: operator.logs, timeoutMs: 15 * 60_000 });
    const seconds = (Date.now() - started) / 1000;
    const each = run.status?.steps?.find((s) => s.name === 'each');
    const pods = [...kubelet.seen.values()].filter((p) => runOf.get(p.name) === 'wide-1');
    const statusBytes = Buffer.byteLength(JSON.stringify(run.status));
    const peak = peakConcurrency(pods);
    console.log(`forEach ${ITEMS}: ${run.status?.phase} in ${seconds.toFixed(1)} s, items ${JSON.stringify(each?.items)}, item Pods ${pods.length}, peak concurrent ${peak}, status ${statusBytes} bytes`);
    assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
    assert.deepEqual(each?.items, { total: ITEMS, pending: 0, running: 0, succeeded: ITEMS * 0.9, failed: ITEMS / 10 });
    assert.equal(pods.length, ITEMS, 'one Pod per item, none twice');
    assert.equal(new Set(pods.map((p) => p.name)).size, ITEMS);
    assert.ok(peak <= MAX_PARALLELISM, `at most ${MAX_PARALLELISM} items at once, saw ${peak}`);
    assert.ok(peak >= MAX_PARALLELISM / 2, `the fan-out ran wide (peak ${peak})`);
    assert.ok(statusBytes < 16 * 1024, `status of ${statusBytes} bytes`);
    assert.equal(each?.failedItems?.length, 10, 'the first ten failed items are shown');
    assert.deepEqual(each?.failedItems?.slice(0, 2).map((f) => f.index), [9, 19]);
  });

  it('fails with minSuccessRatio 0.95 as soon as the ratio cannot be reached, stopping the rest', async () => {
    await cluster.client.create(PIPELINES, namespace, fanOut('strict', 1000, 0.95));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'strict-1', namespace, pipeline: 'strict' }));
    const run = await waitForRun(cluster, namespace, 'strict-1', { operatorLogs: operator.logs, timeoutMs: 10 * 60_000 });
    const each = run.status?.steps?.find((s) => s.name === 'each');
    console.log(`forEach 1000 at 0.95: ${run.status?.phase} ${each?.reason}: ${each?.message?.slice(0, 120)}; items ${JSON.stringify(each?.items)}`);
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(each?.reason, 'ItemsFailed');
    // 0.95 of 1000 allows 50 failures: the pass that sees the 51st ends the step (items that
    // ended in the same moment may add a few), long before every item ran.
    assert.ok((each?.items?.failed ?? 0) >= 51 && (each?.items?.failed ?? 0) <= 51 + MAX_PARALLELISM / 10, `failed ${each?.items?.failed}`);
    assert.ok((each?.items?.succeeded ?? 0) + (each?.items?.failed ?? 0) < 1000);
  });
});
