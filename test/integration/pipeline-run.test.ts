// The operator against the real API server: DAG order and parallelism, retries with backoff,
// step timeouts, cancellation, and Pipeline validation. A fake kubelet moves Pod phases.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { diamond, pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet, type Behavior } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

let cluster: TestCluster;
let namespace: string;
let operator: OperatorProcess;
let kubelet: FakeKubelet;
/** Behaviour per step name; steps not listed succeed after 300 ms. */
const script = new Map<string, (pod: Pod) => Behavior>();

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('runs');
  operator = startOperator({ kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new FakeKubelet(cluster.client, namespace, (pod) => {
    const behave = script.get(pod.metadata.labels?.['ferry.dev/step'] ?? '');
    return behave ? behave(pod) : { outcome: 'succeed', afterMs: 300 };
  }).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await cluster?.cleanup();
});

const getRun = (name: string) => cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, name);

const finished = (name: string, timeoutMs = 30_000) => waitForRun(cluster, namespace, name, { timeoutMs, operatorLogs: operator.logs });

const podsOf = async (run: string) =>
  (await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${run}`)).items.map((p) => p.metadata.name).sort();

describe('PipelineRun', () => {
  it('runs a diamond DAG with b and c in parallel and succeeds', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'diamond', namespace, steps: diamond() }));
    script.set('b', () => ({ outcome: 'succeed', afterMs: 1500 }));
    script.set('c', () => ({ outcome: 'succeed', afterMs: 1500 }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'diamond-1', namespace, pipeline: 'diamond' }));
    const run = await finished('diamond-1');
    assert.equal(run.status?.phase, 'Succeeded');
    assert.equal(run.status?.progress, '4/4');
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((s) => kubelet.seen.get(`diamond-1-${s}-1`)!);
    assert.ok(a && b && c && d, 'one Pod per step');
    // b and c start only after a finished, overlap each other, and d waits for both.
    assert.ok(b.seenAt >= a.finishedAt! && c.seenAt >= a.finishedAt!);
    assert.ok(b.seenAt < c.finishedAt! && c.seenAt < b.finishedAt!, 'b and c ran at the same time');
    assert.ok(d.seenAt >= Math.max(b.finishedAt!, c.finishedAt!));
    assert.deepEqual(await podsOf('diamond-1'), ['diamond-1-a-1', 'diamond-1-b-1', 'diamond-1-c-1', 'diamond-1-d-1']);
    const cond = run.status?.conditions?.find((x) => x.type === 'Succeeded');
    assert.equal(cond?.status, 'True');
    assert.equal(run.status?.observedGeneration, 1);
  });

  it('keeps to spec.parallelism', async () => {
    const wide = ['w1', 'w2', 'w3', 'w4'].map((n) => step(n));
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'wide', namespace, steps: wide }));
    for (const n of ['w1', 'w2', 'w3', 'w4']) script.set(n, () => ({ outcome: 'succeed', afterMs: 700 }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'wide-1', namespace, pipeline: 'wide', parallelism: 2 }));
    const run = await finished('wide-1');
    assert.equal(run.status?.phase, 'Succeeded');
    const spans = ['w1', 'w2', 'w3', 'w4'].map((n) => kubelet.seen.get(`wide-1-${n}-1`)!);
    for (const s of spans) {
      const overlapping = spans.filter((o) => o.seenAt < s.seenAt && o.finishedAt! > s.seenAt).length;
      assert.ok(overlapping <= 1, `at most 2 steps at once, saw ${overlapping + 1} when ${s.name} started`);
    }
  });

  it('retries a failing step with exponential backoff, then fails the run naming the step', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'flaky', namespace,
      steps: [step('prepare'), step('train', { dependsOn: ['prepare'], retries: { limit: 2, backoffSeconds: 1 } }), step('report', { dependsOn: ['train'] })],
    }));
    script.set('train', () => ({ outcome: 'fail', exitCode: 3, message: 'loss is NaN' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'flaky-1', namespace, pipeline: 'flaky' }));
    const run = await finished('flaky-1');
    assert.equal(run.status?.phase, 'Failed');
    const attempts = kubelet.attemptsOf('train');
    assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3], 'first attempt and two retries');
    // Backoff: 1 s before attempt 2, 2 s before attempt 3.
    assert.ok(attempts[1]!.seenAt - attempts[0]!.finishedAt! >= 1000, 'waited ≥ 1 s before the first retry');
    assert.ok(attempts[2]!.seenAt - attempts[1]!.finishedAt! >= 2000, 'waited ≥ 2 s before the second retry');
    const cond = run.status?.conditions?.find((x) => x.type === 'Succeeded');
    assert.equal(cond?.status, 'False');
    assert.equal(cond?.reason, 'Failed');
    assert.match(cond?.message ?? '', /step "train" failed: container step exited with code 3: loss is NaN after 3 attempts/);
    const train = run.status?.steps?.find((s) => s.name === 'train');
    assert.equal(train?.phase, 'Failed');
    assert.equal(train?.attempts, 3);
    assert.equal(run.status?.steps?.find((s) => s.name === 'report')?.phase, 'Skipped');
    assert.deepEqual(await podsOf('flaky-1'), ['flaky-1-prepare-1', 'flaky-1-train-1', 'flaky-1-train-2', 'flaky-1-train-3']);
  });

  it('fails a step that exceeds its timeout and deletes its Pod', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'slow', namespace, steps: [step('hang', { timeoutSeconds: 2 })] }));
    script.set('hang', () => ({ outcome: 'run' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'slow-1', namespace, pipeline: 'slow' }));
    const run = await finished('slow-1', 20_000);
    assert.equal(run.status?.phase, 'Failed');
    const hang = run.status?.steps?.find((s) => s.name === 'hang');
    assert.equal(hang?.reason, 'TimedOut');
    assert.match(hang?.message ?? '', /exceeded its timeout of 2s/);
    await eventually('the timed-out Pod to be deleted', async () => ((await podsOf('slow-1')).length === 0 ? true : undefined));
  });

  it('cancels a running run when spec.cancel is set', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'long', namespace, steps: [step('l1'), step('l2', { dependsOn: ['l1'] })] }));
    script.set('l1', () => ({ outcome: 'run' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'long-1', namespace, pipeline: 'long' }));
    await eventually('l1 to run', async () => (kubelet.seen.has('long-1-l1-1') ? true : undefined));
    await cluster.client.mergePatch(PIPELINE_RUNS, namespace, 'long-1', { spec: { cancel: true } });
    const run = await finished('long-1');
    assert.equal(run.status?.phase, 'Cancelled');
    assert.deepEqual(run.status?.steps?.map((s) => [s.name, s.phase]), [['l1', 'Cancelled'], ['l2', 'Skipped']]);
    await eventually('the running Pod to be deleted', async () => ((await podsOf('long-1')).length === 0 ? true : undefined));
    // Un-cancelling is refused by the CRD's CEL rule.
    const undo = await cluster.kubectl(['-n', namespace, 'patch', 'pipelinerun', 'long-1', '--type=merge', '-p', '{"spec":{"cancel":false}}']);
    assert.notEqual(undo.code, 0);
    assert.match(undo.stderr, /a cancelled run cannot be resumed/);
  });

  it('fails a run whose parameters do not fit the Pipeline', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'typed', namespace,
      parameters: [{ name: 'epochs', type: 'int' }, { name: 'rate', type: 'float', default: 0.1 }],
      steps: [step('fit', { parameters: ['epochs', 'rate'] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'typed-1', namespace, pipeline: 'typed',
      parameters: [{ name: 'epochs', value: 'ten' }, { name: 'colour', value: 'red' }],
    }));
    const run = await finished('typed-1');
    const cond = run.status?.conditions?.find((x) => x.type === 'Succeeded');
    assert.equal(cond?.reason, 'InvalidParameters');
    assert.match(cond?.message ?? '', /unknown parameter "colour"/);
    assert.match(cond?.message ?? '', /parameter "epochs" \(int\): "ten" is not an integer/);
    assert.deepEqual(await podsOf('typed-1'), []);
  });

  it('reports a cyclic Pipeline as Ready=False naming the cycle, and fails runs of it', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'cyclic', namespace,
      steps: [step('x', { dependsOn: ['z'] }), step('y', { dependsOn: ['x'] }), step('z', { dependsOn: ['y'] })],
    }));
    const ready = await eventually('Ready condition', async () => {
      const p = await cluster.client.get<Pipeline>(PIPELINES, namespace, 'cyclic');
      return p.status?.conditions?.find((c) => c.type === 'Ready');
    });
    assert.equal(ready.status, 'False');
    assert.equal(ready.reason, 'DependencyCycle');
    assert.equal(ready.message, 'dependency cycle: x → y → z → x');
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'cyclic-1', namespace, pipeline: 'cyclic' }));
    const run = await finished('cyclic-1');
    assert.equal(run.status?.conditions?.find((c) => c.type === 'Succeeded')?.reason, 'InvalidPipeline');
  });

  it('waits for a Pipeline that does not exist yet', async () => {
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'early-1', namespace, pipeline: 'later' }));
    const pending = await eventually('PipelineNotFound', async () => {
      const run = await getRun('early-1');
      return run.status?.conditions?.find((c) => c.reason === 'PipelineNotFound') ? run : undefined;
    });
    assert.equal(pending.status?.phase, 'Pending');
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'later', namespace, steps: [step('only')] }));
    assert.equal((await finished('early-1')).status?.phase, 'Succeeded');
  });

  it('fails a step whose Pod the API server refuses, without blocking other runs', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'unschedulable', namespace,
      steps: [step('placed', { nodeSelector: { 'not a valid/label key!': 'x' } })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'rejected-1', namespace, pipeline: 'unschedulable' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'after-rejected-1', namespace, pipeline: 'later' }));
    const run = await finished('rejected-1');
    assert.equal(run.status?.phase, 'Failed');
    const placed = run.status?.steps?.find((s) => s.name === 'placed');
    assert.equal(placed?.reason, 'PodRejected');
    assert.match(placed?.message ?? '', /Pod rejected by the API server: .*422 Invalid/);
    assert.equal((await finished('after-rejected-1')).status?.phase, 'Succeeded');
  });

  it('serves /healthz, /readyz and /metrics with reconcile counts', async () => {
    const port = operator.logs.find((l) => l.msg === 'operator starting')?.httpPort;
    assert.equal(typeof port, 'number');
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${String(port)}${path}`);
      return { status: response.status, text: await response.text() };
    };
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/readyz')).status, 200);
    const metrics = (await get('/metrics')).text;
    const value = (pattern: RegExp) => Number(metrics.match(pattern)?.[1] ?? NaN);
    assert.ok(value(/^ferry_reconcile_total\{controller="pipelinerun",result="success"\} (\d+)/m) > 0);
    assert.ok(value(/^ferry_step_pods_created_total (\d+)/m) >= 4);
    assert.ok(value(/^ferry_pipelineruns_finished_total\{phase="Succeeded"\} (\d+)/m) >= 1);
    assert.ok(value(/^ferry_api_requests_total\{verb="POST",code="201"\} (\d+)/m) > 0);
    assert.equal(value(/^ferry_leader (\d+)/m), 1);
  });
});
