// Image pinning against a real OCI registry (Debian's docker-registry, images built by buildah):
// a run freezes each step's tag as a digest, a tag moved mid-run does not change the run's
// Pods, and an image that does not exist fails the run with a condition naming it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { freePort } from '../harness/ports.ts';
import { buildAndPushImage, startRegistry } from '../harness/registry.ts';

let cluster: TestCluster;
let namespace: string;
let registry: Awaited<ReturnType<typeof startRegistry>>;
let operator: OperatorProcess;
let kubelet: FakeKubelet;
// A registry host where nothing listens. Listed, as an administrator would list an in-cluster
// registry: otherwise the address policy refuses the loopback address for good, not "unreachable".
let offlineHost: string;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('images');
  registry = await startRegistry();
  offlineHost = `127.0.0.1:${await freePort()}`;
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath,
    namespaces: [namespace],
    leaseName: 'ferry',
    leaseNamespace: namespace,
    env: { FERRY_INSECURE_REGISTRIES: `${registry.host},${offlineHost}`, FERRY_IMAGE_CACHE_SECONDS: '0' },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new FakeKubelet(cluster.client, namespace, (pod) =>
    ({ outcome: 'succeed', afterMs: pod.metadata.labels?.['ferry.dev/step'] === 'first' ? 3000 : 200 })).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await registry?.stop();
  await cluster?.cleanup();
});

const finished = (name: string) => waitForRun(cluster, namespace, name, { operatorLogs: operator.logs });

const stepImage = async (podName: string) =>
  (await cluster.client.get<Pod>(PODS, namespace, podName)).spec?.initContainers?.find((c) => c.name === 'step')?.image;

describe('image pinning', () => {
  it('freezes a tag as its digest, and a tag moved mid-run does not change the run', async () => {
    const image = `${registry.host}/ferry/step:1.0`;
    const original = await buildAndPushImage(registry.host, 'ferry/step', '1.0', 'version one');
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'pinned', namespace,
      steps: [step('first', { image }), step('second', { image, dependsOn: ['first'] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'pinned-1', namespace, pipeline: 'pinned' }));
    await eventually('the first step to run', async () => (kubelet.seen.has('pinned-1-first-1') ? true : undefined));
    const moved = await buildAndPushImage(registry.host, 'ferry/step', '1.0', 'version two');
    assert.notEqual(moved, original);

    const run = await finished('pinned-1');
    assert.equal(run.status?.phase, 'Succeeded');
    const pinned = `${registry.host}/ferry/step@${original}`;
    assert.equal(await stepImage('pinned-1-first-1'), pinned);
    assert.equal(await stepImage('pinned-1-second-1'), pinned, 'the second step, created after the tag moved, still runs the frozen digest');

    // A new run picks up where the tag points now.
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'pinned-2', namespace, pipeline: 'pinned' }));
    await finished('pinned-2');
    assert.equal(await stepImage('pinned-2-first-1'), `${registry.host}/ferry/step@${moved}`);
  });

  it('fails a run whose image does not exist, naming the step and the image', async () => {
    const missing = `${registry.host}/ferry/step:9.9`;
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'missing', namespace, steps: [step('train', { image: missing })] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'missing-1', namespace, pipeline: 'missing' }));
    const run = await finished('missing-1');
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(condition?.reason, 'ImageResolutionFailed');
    assert.match(condition?.message ?? '', new RegExp(`step "train": image ${missing.replace(/[.:/]/g, '\\$&')}: .*not found`));
    assert.equal((await cluster.client.list<Pod>(PODS, namespace, 'ferry.dev/run=missing-1')).items.length, 0);
  });

  it('refuses a tag under imagePolicy RequireDigest', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'strict', namespace,
      imagePolicy: 'RequireDigest',
      steps: [step('train', { image: `${registry.host}/ferry/step:1.0` })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'strict-1', namespace, pipeline: 'strict' }));
    const condition = (await finished('strict-1')).status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(condition?.reason, 'ImageNotPinned');
    assert.match(condition?.message ?? '', /step "train": image .* has no digest/);
  });

  it('waits and retries, without failing, while the registry is unreachable', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'offline', namespace, steps: [step('train', { image: `${offlineHost}/ferry/step:1.0` })] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'offline-1', namespace, pipeline: 'offline' }));
    const run = await eventually('an ImageResolutionFailed condition', async () => {
      const r = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'offline-1');
      return r.status?.conditions?.find((c) => c.reason === 'ImageResolutionFailed') ? r : undefined;
    });
    assert.equal(run.status?.phase, 'Pending');
    assert.equal(run.status?.conditions?.[0]?.status, 'Unknown');
    // What the tenant reads names the host it wrote, not the socket error (no port-scanning oracle).
    const message = run.status?.conditions?.find((c) => c.reason === 'ImageResolutionFailed')?.message ?? '';
    assert.match(message, /registry 127\.0\.0\.1:\d+ unreachable/);
    assert.doesNotMatch(message, /ECONNREFUSED/);
  });

  it('fails a run whose image is on a cloud metadata address or an unlisted private one', async () => {
    const unlisted = `127.0.0.1:${await freePort()}`;
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'forbidden', namespace, steps: [
      step('meta', { image: '169.254.169.254/latest/meta-data:1' }),
    ] }));
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'private', namespace, steps: [step('train', { image: `${unlisted}/ferry/step:1.0` })] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'forbidden-1', namespace, pipeline: 'forbidden' }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'private-1', namespace, pipeline: 'private' }));
    for (const [name, wording] of [
      ['forbidden-1', /step "meta": image 169\.254\.169\.254\/latest\/meta-data:1: registry 169\.254\.169\.254 is not allowed by the operator's address policy/],
      ['private-1', /step "train": .*is not allowed by the operator's address policy: its address is private or loopback; an administrator can allow it with allowedPrivateRegistries/],
    ] as const) {
      const run = await finished(name);
      const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
      assert.equal(run.status?.phase, 'Failed', name);
      assert.equal(condition?.reason, 'ImageResolutionFailed');
      assert.match(condition?.message ?? '', wording);
    }
  });
});
