// The operator against the real API server, on failures by cause: an evicted Pod is retried
// without using a retry, retries.policy decides whether an OOMKilled step is retried, and a
// Pod stuck on an image it cannot pull, or with no node to run it, fails its step after the
// operator's timeout (here 2 s) and is deleted. A fake kubelet writes what the kubelet and
// the scheduler would.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun, StepStatus } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { renderCrds } from '../../scripts/generate-crds.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet, type Behavior } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

let cluster: TestCluster;
let namespace: string;
let operator: OperatorProcess;
let kubelet: FakeKubelet;
/** Behaviour per step name and attempt; steps not listed succeed after 300 ms. */
const script = new Map<string, (attempt: number) => Behavior>();

/**
 * The CRDs of the API server are those of crds/ (global-setup.ts). Until they are regenerated
 * from operator/api/v1alpha1 (npm run generate), the API server would prune the new fields
 * (retries.policy, status.steps[].cause...): this applies the CRDs the schemas render now.
 */
async function ensureCurrentCrds(): Promise<void> {
  const installed = await cluster.kubectlOk(['get', 'crd', 'pipelineruns.ferry.dev', '-o', 'json']);
  if (installed.includes('infrastructureRetries')) return;
  const documents = [...renderCrds().values()].join('\n---\n');
  await cluster.kubectlOk(['apply', '--server-side', '--force-conflicts', '--field-manager=failure-causes-test', '-f', '-'], documents);
  await cluster.kubectlOk(['wait', '--for', 'condition=established', '--timeout=60s', 'crd/pipelineruns.ferry.dev', 'crd/pipelines.ferry.dev']);
  console.log('failure-causes: applied the CRDs rendered from operator/api/v1alpha1 (crds/ predates the new fields)');
}

before(async () => {
  cluster = connect();
  await ensureCurrentCrds();
  namespace = await cluster.createNamespace('causes');
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_IMAGE_PULL_TIMEOUT_SECONDS: '2', FERRY_UNSCHEDULABLE_TIMEOUT_SECONDS: '2' },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new FakeKubelet(cluster.client, namespace, (pod) => {
    const behave = script.get(pod.metadata.labels?.['ferry.dev/step'] ?? '');
    return behave ? behave(Number(pod.metadata.labels?.['ferry.dev/attempt'] ?? 0)) : { outcome: 'succeed', afterMs: 300 };
  }).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await cluster?.cleanup();
});

const finished = (name: string, timeoutMs = 30_000) => waitForRun(cluster, namespace, name, { timeoutMs, operatorLogs: operator.logs });

const podsOf = async (run: string) =>
  (await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${run}`)).items.map((p) => p.metadata.name).sort();

const stepOf = (run: PipelineRun, name: string): StepStatus => {
  const found = run.status?.steps?.find((s) => s.name === name);
  assert.ok(found, `step ${name} in the status of ${run.metadata.name}`);
  return found;
};

/** What the lead quotes: one line per run. */
function report(label: string, run: PipelineRun, name: string): void {
  const s = stepOf(run, name);
  console.log(`failure-causes: ${label}: run ${run.status?.phase}, step ${s.phase}, attempts ${s.attempts}, ` +
    `infrastructureRetries ${s.infrastructureRetries ?? 0}, cause ${s.cause ?? '-'}, exitCode ${s.exitCode ?? '-'}, reason ${s.reason ?? '-'}, message ${JSON.stringify(s.message ?? '')}`);
}

describe('failures by cause', () => {
  it('retries an evicted Pod without using a retry', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'evicted', namespace, steps: [step('fit', { retries: { limit: 0, backoffSeconds: 1 } })] }));
    script.set('fit', (attempt) => (attempt === 1 ? { outcome: 'evict', afterMs: 300 } : { outcome: 'succeed', afterMs: 300 }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'evicted-1', namespace, pipeline: 'evicted' }));
    const run = await finished('evicted-1');
    report('evicted, limit 0', run, 'fit');
    assert.equal(run.status?.phase, 'Succeeded');
    const fit = stepOf(run, 'fit');
    assert.equal(fit.attempts, 2);
    assert.equal(fit.infrastructureRetries, 1);
    assert.equal(fit.cause, undefined, 'the cause of a failed attempt goes once the next one starts');
    assert.deepEqual(kubelet.attemptsOf('fit').map((a) => a.attempt), [1, 2]);
    assert.deepEqual(await podsOf('evicted-1'), ['evicted-1-fit-1', 'evicted-1-fit-2']);
    const retrying = await eventually('the StepRetrying Event', async () => {
      const events = await cluster.kubectlOk(['-n', namespace, 'get', 'events', '--field-selector', 'reason=StepRetrying', '-o', 'jsonpath={.items[*].message}']);
      return events.includes('evicted-1') || events.includes('fit') ? events : undefined;
    });
    console.log(`failure-causes: evicted, StepRetrying Event: ${retrying}`);
    assert.match(retrying, /retries\.limit not used/);
  });

  it('retries an OOMKilled step under OnError, and not under OnInfrastructure', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'oom-on-error', namespace,
      steps: [step('big', { retries: { limit: 1, policy: 'OnError', backoffSeconds: 1 } })] }));
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'oom-on-infra', namespace,
      steps: [step('huge', { retries: { limit: 1, policy: 'OnInfrastructure', backoffSeconds: 1 } })] }));
    script.set('big', () => ({ outcome: 'oom', afterMs: 200 }));
    script.set('huge', () => ({ outcome: 'oom', afterMs: 200 }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'oom-on-error-1', namespace, pipeline: 'oom-on-error' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'oom-on-infra-1', namespace, pipeline: 'oom-on-infra' }));

    const onError = await finished('oom-on-error-1');
    report('OOMKilled, OnError limit 1', onError, 'big');
    const big = stepOf(onError, 'big');
    assert.equal(onError.status?.phase, 'Failed');
    assert.deepEqual([big.phase, big.attempts, big.cause, big.exitCode, big.reason], ['Failed', 2, 'OOMKilled', 137, 'OOMKilled']);
    assert.match(big.message ?? '', /container step ran out of memory \(OOMKilled, exit code 137\) after 2 attempts/);
    assert.deepEqual(kubelet.attemptsOf('big').map((a) => a.attempt), [1, 2]);

    const onInfra = await finished('oom-on-infra-1');
    report('OOMKilled, OnInfrastructure limit 1', onInfra, 'huge');
    const huge = stepOf(onInfra, 'huge');
    assert.equal(onInfra.status?.phase, 'Failed');
    assert.deepEqual([huge.phase, huge.attempts, huge.cause, huge.exitCode, huge.reason], ['Failed', 1, 'OOMKilled', 137, 'OOMKilled']);
    assert.deepEqual(kubelet.attemptsOf('huge').map((a) => a.attempt), [1]);
    const cond = onInfra.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.match(cond?.message ?? '', /^step "huge" failed: container step ran out of memory/);
  });

  it('fails a step whose image cannot be pulled after --image-pull-timeout-seconds, and deletes its Pod', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'unpullable', namespace, steps: [step('pull', { retries: { limit: 3, backoffSeconds: 1 } })] }));
    script.set('pull', () => ({ outcome: 'imagePull' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'unpullable-1', namespace, pipeline: 'unpullable' }));
    const run = await finished('unpullable-1');
    report('ImagePullBackOff, timeout 2s, limit 3', run, 'pull');
    const pull = stepOf(run, 'pull');
    assert.equal(run.status?.phase, 'Failed');
    assert.deepEqual([pull.phase, pull.attempts, pull.reason, pull.cause], ['Failed', 1, 'ImagePullFailed', 'ImagePullFailed'], 'never retried, whatever the limit');
    assert.match(pull.message ?? '', /container step could not pull its image ".*" for 2s \(ImagePullBackOff\): Back-off pulling image/);
    const waited = Date.parse(pull.finishedAt ?? '') - kubelet.seen.get('unpullable-1-pull-1')!.seenAt;
    console.log(`failure-causes: ImagePullBackOff: failed ${waited} ms after the fake kubelet first saw the Pod (finishedAt has second precision)`);
    assert.ok(waited >= 1000, `the step waited for the timeout (${waited} ms)`);
    await eventually('the stuck Pod to be deleted', async () => ((await podsOf('unpullable-1')).length === 0 ? true : undefined));
    console.log('failure-causes: ImagePullBackOff: Pod unpullable-1-pull-1 deleted');
  });

  it('fails a step no node can run after --unschedulable-timeout-seconds, and deletes its Pod', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'nowhere', namespace, steps: [step('gpu', { retries: { limit: 3, backoffSeconds: 1 } })] }));
    script.set('gpu', () => ({ outcome: 'unschedulable' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'nowhere-1', namespace, pipeline: 'nowhere' }));
    const run = await finished('nowhere-1');
    report('Unschedulable, timeout 2s, limit 3', run, 'gpu');
    const gpu = stepOf(run, 'gpu');
    assert.equal(run.status?.phase, 'Failed');
    assert.deepEqual([gpu.phase, gpu.attempts, gpu.reason, gpu.cause], ['Failed', 1, 'Unschedulable', 'Unschedulable']);
    assert.match(gpu.message ?? '', /^no node could run the Pod for 2s: 0\/3 nodes are available: 3 Insufficient nvidia\.com\/gpu\./);
    await eventually('the unschedulable Pod to be deleted', async () => ((await podsOf('nowhere-1')).length === 0 ? true : undefined));
    console.log('failure-causes: Unschedulable: Pod nowhere-1-gpu-1 deleted');
  });
});
