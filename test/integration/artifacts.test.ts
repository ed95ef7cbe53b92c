// Artifacts and the frozen configuration against the real API server and fake-gcs-server: a
// step's output reaches the next step through gs://, the agent runs as real processes (the
// process kubelet plays the Pod), every run's PipelineConfiguration is written once, survives
// Pipeline edits, reproduces byte for byte, and never holds a Secret's value.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import { extractArtifact } from '../../operator/agent/tar.ts';
import { openArtifactStore } from '../../operator/artifacts/open.ts';
import { ObjectExistsError, type ArtifactStore } from '../../operator/artifacts/store.ts';
import { canonicalJson } from '../../operator/configuration/canonical-json.ts';
import type { PipelineConfiguration } from '../../operator/configuration/pipeline-configuration.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS, SECRETS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { startFakeGcs, writeTestServiceAccountKey, type FakeGcs } from '../harness/fake-gcs.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';

const AGENT_IMAGE = 'ferry:test';
const BUCKET = 'ferry-artifacts';
const SECRET_VALUE = 's3cr3t-do-not-leak-7f3a';

let cluster: TestCluster;
let namespace: string;
let gcs: FakeGcs;
let store: ArtifactStore;
let operator: OperatorProcess;
let kubelet: ProcessKubelet;
let keyDir: string;

const sh = (script: string) => ['sh', '-c', script];

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('artifacts');
  gcs = await startFakeGcs({ buckets: [BUCKET] });
  const root = `gs://${BUCKET}/${namespace}`;
  store = openArtifactStore(root, { gcsApiEndpoint: gcs.endpoint });
  // The operator signs V4 URLs for step Pods with a key of its own; the Pods get no credential.
  keyDir = await mkdtemp(join(tmpdir(), 'ferry-gcs-key-'));
  const key = await writeTestServiceAccountKey(keyDir);
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath,
    namespaces: [namespace],
    leaseName: 'ferry',
    leaseNamespace: namespace,
    env: { FERRY_ARTIFACT_STORE: root, FERRY_GCS_ENDPOINT: gcs.endpoint, FERRY_AGENT_IMAGE: AGENT_IMAGE, GOOGLE_APPLICATION_CREDENTIALS: key },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new ProcessKubelet(cluster.client, namespace, { agentImage: AGENT_IMAGE }).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await gcs?.stop();
  await cluster?.cleanup();
  if (keyDir) await rm(keyDir, { recursive: true, force: true });
});

const finished = (name: string) => waitForRun(cluster, namespace, name, { operatorLogs: operator.logs });

async function configurationOf(run: PipelineRun): Promise<{ bytes: Buffer; document: PipelineConfiguration }> {
  const uri = run.status?.configuration?.uri;
  assert.ok(uri, `run ${run.metadata.name} has a configuration`);
  const bytes = await store.readAll(uri, 1 << 20);
  return { bytes, document: JSON.parse(bytes.toString('utf8')) as PipelineConfiguration };
}

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Extracts an output artifact to a temp dir and returns that dir. */
async function extracted(uri: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-artifact-'));
  await extractArtifact(await store.read(uri), join(dir, 'out'));
  return join(dir, 'out');
}

const etl = (name: string) => pipeline({ name, namespace,
  parameters: [{ name: 'rows', type: 'int', default: 2 }],
  steps: [
    step('produce', {
      command: sh('mkdir -p /ferry/outputs/dataset && seq 1 $(params.rows) > /ferry/outputs/dataset/rows.csv && echo \'{"rows": $(params.rows), "note": "x"}\' > /ferry/outputs/metrics.json'),
      outputs: [{ name: 'dataset', type: 'dataset' }],
      env: [{ name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: 'hub-token', key: 'token' } } }],
    }),
    step('consume', {
      dependsOn: ['produce'],
      inputs: [{ name: 'data', from: { step: 'produce', output: 'dataset' } }],
      command: sh('wc -l < $FERRY_INPUTS_DIR/data/rows.csv > $FERRY_OUTPUTS_DIR/count && test -s /ferry/config.json && test "$API_TOKEN" = ""'),
      outputs: [{ name: 'count', type: 'file' }],
    }),
  ],
});

describe('artifacts and the frozen configuration', () => {
  let first: PipelineRun;

  it('moves a dataset from one step to the next through gs://, verified by sha256', async () => {
    await cluster.client.create(SECRETS, namespace, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hub-token', namespace }, stringData: { token: SECRET_VALUE },
    } as never);
    await cluster.client.create(PIPELINES, namespace, etl('etl'));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'etl-1', namespace, pipeline: 'etl', parameters: [{ name: 'rows', value: 5 }] }));
    first = await finished('etl-1');
    assert.equal(first.status?.phase, 'Succeeded', JSON.stringify(first.status?.conditions));
    const produce = first.status?.steps?.find((s) => s.name === 'produce');
    const dataset = produce?.outputs?.find((o) => o.name === 'dataset');
    assert.ok(dataset && new RegExp(`^${store.root}/${namespace}/runs/${first.metadata.uid}/produce/1/dataset\\.tar$`).test(dataset.uri), dataset?.uri);
    // The bytes in the bucket hash to the digest the agent reported (and the consumer verified).
    assert.equal(sha256(await store.readAll(dataset.uri, 1 << 20)), dataset.digest);
    assert.equal(await readFile(join(await extracted(dataset.uri), 'rows.csv'), 'utf8'), '1\n2\n3\n4\n5\n');
    assert.deepEqual(produce?.metrics, { rows: 5 });
    const count = first.status?.steps?.find((s) => s.name === 'consume')?.outputs?.[0];
    assert.equal((await readFile(await extracted(count!.uri), 'utf8')).trim(), '5');
    // Through V4 signed URLs: no step container is told the bucket or given a credential.
    const pods = (await cluster.client.list<Pod>(PODS, namespace, 'ferry.dev/run=etl-1')).items;
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
        const names = (c.env ?? []).map((e) => e.name);
        assert.ok(!names.includes('FERRY_ARTIFACT_STORE') && !names.includes('GOOGLE_APPLICATION_CREDENTIALS') && !names.includes('FERRY_GCS_ENDPOINT'), `${pod.metadata.name}/${c.name}: ${names.join(',')}`);
        assert.deepEqual((c.volumeMounts ?? []).map((m) => m.name), ['ferry']);
      }
      const outputs = JSON.parse(pod.spec?.containers[0]?.env?.find((e) => e.name === 'FERRY_OUTPUTS')?.value ?? '[]') as Array<{ url: string; headers: Record<string, string> }>;
      for (const o of outputs) {
        assert.match(o.url, /X-Goog-Algorithm=GOOG4-RSA-SHA256/);
        assert.deepEqual(o.headers, { 'x-goog-if-generation-match': '0' });
      }
    }
  });

  it('writes the configuration once, with the digest in status, and the store refuses a second write', async () => {
    const { bytes, document } = await configurationOf(first);
    assert.equal(first.status?.configuration?.uri, `gs://${BUCKET}/${namespace}/${namespace}/etl/etl-1/pipeline-configuration.json`);
    assert.equal(sha256(bytes), first.status?.configuration?.digest);
    assert.deepEqual(document.parameters, [{ name: 'rows', type: 'int', value: '5', source: 'run' }]);
    assert.equal(document.run.name, 'etl-1');
    assert.equal(document.kind, 'PipelineConfiguration');
    await assert.rejects(store.createOnce(`${namespace}/etl/etl-1/pipeline-configuration.json`, Buffer.from('{}')), ObjectExistsError);
    assert.equal(sha256(await store.readAll(first.status!.configuration!.uri, 1 << 20)), first.status?.configuration?.digest);
  });

  it('keeps Secret values out of the configuration, status, events and logs', async () => {
    const { bytes, document } = await configurationOf(first);
    assert.ok(!bytes.includes(SECRET_VALUE));
    const env = document.spec.steps.find((s) => s.name === 'produce')?.env;
    assert.deepEqual(env, [{ name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: 'hub-token', key: 'token' } } }]);
    assert.ok(!JSON.stringify(first).includes(SECRET_VALUE));
    const events = await cluster.kubectlOk(['get', 'events.events.k8s.io', '-n', namespace, '-o', 'json']);
    assert.ok(!events.includes(SECRET_VALUE));
    assert.ok(!JSON.stringify(operator.logs).includes(SECRET_VALUE));
  });

  it('reproduces a run from its configuration byte for byte, except its identity', async () => {
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'etl-1-again', namespace, reproduceFrom: { run: 'etl-1' } }));
    const again = await finished('etl-1-again');
    assert.equal(again.status?.phase, 'Succeeded', JSON.stringify(again.status?.conditions));
    const a = await configurationOf(first);
    const b = await configurationOf(again);
    const { run: runA, ...restA } = a.document;
    const { run: runB, ...restB } = b.document;
    assert.equal(canonicalJson(restB), canonicalJson(restA));
    assert.equal(runB.name, 'etl-1-again');
    assert.notEqual(runB.uid, runA.uid);
    assert.deepEqual(runB.reproducedFrom, first.status?.configuration);
    assert.equal(again.status?.steps?.find((s) => s.name === 'consume')?.outputs?.[0]?.digest,
      first.status?.steps?.find((s) => s.name === 'consume')?.outputs?.[0]?.digest, 'same inputs, same output');
  });

  it('refuses to reproduce a configuration whose digest does not match', async () => {
    const uri = first.status!.configuration!.uri;
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({
      name: 'etl-bad-digest', namespace, reproduceFrom: { configuration: { uri, digest: `sha256:${'0'.repeat(64)}` } },
    }));
    const run = await finished('etl-bad-digest');
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(condition?.reason, 'ConfigurationDigestMismatch');
    assert.match(condition?.message ?? '', /^refusing to reproduce: configuration gs:\/\/\S+ does not have the expected digest sha256:0{64}$/);
  });

  it('runs on its frozen configuration when the Pipeline is edited mid-run', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'edited', namespace,
      steps: [
        step('wait', { command: sh('sleep 3') }),
        step('say', { dependsOn: ['wait'], command: sh('echo before > /ferry/outputs/said'), outputs: [{ name: 'said', type: 'file' }] }),
      ],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'edited-1', namespace, pipeline: 'edited' }));
    const frozen = await eventually('the configuration', async () => (await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'edited-1')).status?.configuration);
    const p = await cluster.client.get<Pipeline>(PIPELINES, namespace, 'edited');
    p.spec.steps[1]!.command = sh('echo after > /ferry/outputs/said');
    p.spec.steps[1]!.image = `registry.local/other@sha256:${'1'.repeat(64)}`;
    await cluster.client.replace(PIPELINES, p);
    const run = await finished('edited-1');
    assert.equal(run.status?.phase, 'Succeeded');
    assert.deepEqual(run.status?.configuration, frozen, 'the configuration was not rewritten');
    const said = run.status?.steps?.find((s) => s.name === 'say')?.outputs?.[0];
    assert.equal((await readFile(await extracted(said!.uri), 'utf8')).trim(), 'before');
    const pod = await cluster.client.get<Pod>(PODS, namespace, 'edited-1-say-1');
    const stepContainer = pod.spec?.initContainers?.find((c) => c.name === 'step');
    assert.deepEqual(stepContainer?.command, sh('echo before > /ferry/outputs/said'));
    assert.notEqual(stepContainer?.image, p.spec.steps[1]!.image);
  });

  it('fails a step that does not write a declared output, naming it', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'forgetful', namespace,
      steps: [step('train', { command: sh('true'), outputs: [{ name: 'model', type: 'model' }] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'forgetful-1', namespace, pipeline: 'forgetful' }));
    const run = await finished('forgetful-1');
    assert.equal(run.status?.phase, 'Failed');
    assert.match(run.status?.steps?.[0]?.message ?? '', /declared output "model" was not written to \/ferry\/outputs\/model/);
  });
});

after(async () => {
  await rm(join(tmpdir(), 'ferry-artifact-'), { recursive: true, force: true }).catch(() => undefined);
});
