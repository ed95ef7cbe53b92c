// Caching, the model registry and the metadata store, end to end against the real API server,
// real PostgreSQL and real agent processes: identical runs are served from the cache; a
// deleted artifact turns a hit into a miss; training runs register iris-v1, iris-v2, … and a
// promotion policy moves the best to Production; an inference run pins the Production digest;
// a resumed run reruns only what failed; PostgreSQL going away loses no record.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { openArtifactStore } from '../../operator/artifacts/open.ts';
import type { PipelineConfiguration } from '../../operator/configuration/pipeline-configuration.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { MODEL_VERSIONS, PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { PostgresMetadataStore } from '../../operator/metadata/postgres-store.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { startPostgres, type Postgres } from '../harness/postgres.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';

const AGENT_IMAGE = 'ferry:test';
const sh = (script: string) => ['sh', '-c', script];

let cluster: TestCluster;
let namespace: string;
let postgres: Postgres;
let databaseUrl: string;
let storeDir: string;
let operator: OperatorProcess;
let kubelet: ProcessKubelet;
let flags: string;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('models');
  postgres = await startPostgres();
  databaseUrl = postgres.url(await postgres.createDatabase('models'));
  storeDir = await mkdtemp(join(tmpdir(), 'ferry-models-store-'));
  flags = await mkdtemp(join(tmpdir(), 'ferry-models-flags-'));
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_AGENT_IMAGE: AGENT_IMAGE, FERRY_DATABASE_URL: databaseUrl, FERRY_WORKERS: '8' },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new ProcessKubelet(cluster.client, namespace, { agentImage: AGENT_IMAGE }).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await postgres?.stop();
  await cluster?.cleanup();
  await rm(storeDir, { recursive: true, force: true });
  await rm(flags, { recursive: true, force: true });
});

const finished = (name: string, timeoutMs = 90_000) => waitForRun(cluster, namespace, name, { timeoutMs, operatorLogs: operator.logs });

const podsOf = async (run: string) => (await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${run}`)).items.map((p) => p.metadata.labels?.['ferry.dev/step']).sort();
const phases = (run: PipelineRun) => Object.fromEntries((run.status?.steps ?? []).map((s) => [s.name, s.phase]));
const version = (name: string) => cluster.client.get<ModelVersion>(MODEL_VERSIONS, namespace, name);

async function query<T>(sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}

describe('caching', () => {
  before(async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'features', namespace,
      parameters: [{ name: 'scale', type: 'int', default: 1 }, { name: 'depth', type: 'int', default: 3 }],
      steps: [
        step('prepare', { command: sh('seq 1 $(params.scale) > /ferry/outputs/data'), outputs: [{ name: 'data', type: 'dataset' }] }),
        step('fit', {
          dependsOn: ['prepare'], parameters: ['depth'],
          inputs: [{ name: 'data', from: { step: 'prepare', output: 'data' } }],
          command: sh('cat /ferry/inputs/data > /ferry/outputs/fitted; echo depth=$FERRY_PARAM_DEPTH >> /ferry/outputs/fitted'),
          outputs: [{ name: 'fitted', type: 'model' }],
        }),
        step('report', {
          dependsOn: ['fit'], inputs: [{ name: 'fitted', from: { step: 'fit', output: 'fitted' } }],
          command: sh('wc -c < /ferry/inputs/fitted > /ferry/outputs/size'), outputs: [{ name: 'size', type: 'file' }],
        }),
      ],
    }));
  });

  it('serves a second identical run entirely from the cache: no Pod, every step Cached', async () => {
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'features-1', namespace, pipeline: 'features' }));
    assert.equal((await finished('features-1')).status?.phase, 'Succeeded');
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'features-2', namespace, pipeline: 'features' }));
    const second = await finished('features-2');
    assert.equal(second.status?.phase, 'Succeeded');
    assert.deepEqual(phases(second), { prepare: 'Cached', fit: 'Cached', report: 'Cached' });
    assert.ok(second.status?.steps?.every((s) => s.cachedFrom === 'features-1'));
    assert.deepEqual(await podsOf('features-2'), []);
    assert.match(second.status?.conditions?.[0]?.message ?? '', /all 3 steps succeeded \(3 from cache\)/);
  });

  it('reruns only the step whose parameter changed, and what follows it', async () => {
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'features-3', namespace, pipeline: 'features', parameters: [{ name: 'depth', value: 5 }] }));
    const third = await finished('features-3');
    assert.deepEqual(phases(third), { prepare: 'Cached', fit: 'Succeeded', report: 'Succeeded' });
    assert.deepEqual(await podsOf('features-3'), ['fit', 'report']);
    // The miss is explained: which cache key component differs from the nearest earlier execution.
    assert.match(third.status?.steps?.find((s) => s.name === 'fit')?.message ?? '', /^cache miss: parameters differs from run "features-[12]"$/);
    assert.match(third.status?.steps?.find((s) => s.name === 'report')?.message ?? '', /^cache miss: inputs differs from run "features-[12]"$/);
  });

  it('runs two identical steps that start at once only once', async () => {
    await Promise.all(['twin-a', 'twin-b'].map((name) =>
      cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name, namespace, pipeline: 'features', parameters: [{ name: 'scale', value: 7 }] }))));
    const [a, b] = await Promise.all([finished('twin-a'), finished('twin-b')]);
    assert.equal(a.status?.phase, 'Succeeded');
    assert.equal(b.status?.phase, 'Succeeded');
    const prepared = [...await podsOf('twin-a'), ...await podsOf('twin-b')].filter((s) => s === 'prepare');
    assert.equal(prepared.length, 1, 'one prepare Pod for the two runs');
    assert.deepEqual([phases(a).prepare, phases(b).prepare].sort(), ['Cached', 'Succeeded']);
  });

  it('turns a hit into a miss when the cached artifact was deleted from the store', async () => {
    const first = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'features-1');
    const fitted = first.status?.steps?.find((s) => s.name === 'fit')?.outputs?.[0];
    assert.ok(fitted);
    await openArtifactStore(`file://${storeDir}`).delete(fitted.uri);
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'features-4', namespace, pipeline: 'features' }));
    const fourth = await finished('features-4');
    assert.equal(fourth.status?.phase, 'Succeeded');
    assert.equal(phases(fourth).fit, 'Succeeded', 'fit ran again');
    assert.equal(phases(fourth).prepare, 'Cached');
    // Same inputs, same bytes: the rebuilt artifact has the digest the deleted one had.
    assert.equal(fourth.status?.steps?.find((s) => s.name === 'fit')?.outputs?.[0]?.digest, fitted.digest);
  });

  it('records runs, executions, artifacts and lineage once, however often a run is reconciled', async () => {
    const count = async () => (await query<{ runs: string; executions: string; artifacts: string; edges: string }>(
      `select (select count(*) from runs) runs, (select count(*) from step_executions) executions,
              (select count(*) from artifacts) artifacts, (select count(*) from lineage_edges) edges`))[0]!;
    const before = await eventually('features-1 recorded', async () => {
      const rows = await query<{ phase: string }>('select phase from runs where name = $1', ['features-1']);
      return rows[0]?.phase === 'Succeeded' ? count() : undefined;
    });
    // Touch every finished run so each is reconciled again, and wait until the operator has
    // finished at least that many reconciles after the touches: only then can a double record show.
    const reconciles = async () => (await operator.metrics())
      .filter((s) => s.name === 'ferry_reconcile_total' && s.labels.controller === 'pipelinerun')
      .reduce((sum, s) => sum + s.value, 0);
    const touched = ['features-1', 'features-2', 'features-3', 'features-4'];
    const reconciledBefore = await reconciles();
    for (const name of touched) {
      await cluster.client.mergePatch(PIPELINE_RUNS, namespace, name, { metadata: { annotations: { 'test/touched': String(Date.now()) } } });
    }
    await eventually(`${touched.length} pipelinerun reconciles after the touches`, async () =>
      (await reconciles()) >= reconciledBefore + touched.length ? true : undefined);
    assert.deepEqual(await count(), before);
    assert.ok(Number(before.edges) > 0 && Number(before.artifacts) > 0);
    const executions = await query<{ step: string; phase: string }>(
      'select e.step, e.phase from step_executions e join runs r on r.uid = e.run_uid where r.name = $1 order by e.step', ['features-2']);
    assert.deepEqual(executions.map((e) => [e.step, e.phase]), [['fit', 'Cached'], ['prepare', 'Cached'], ['report', 'Cached']]);
  });
});

describe('model registry', () => {
  const train = (name: string, accuracy: number, extra: Partial<PipelineRun['spec']> = {}) =>
    pipelineRun({ name, namespace, pipeline: 'iris-train', parameters: [{ name: 'accuracy', value: accuracy }], cachePolicy: 'Disabled', ...extra });

  before(async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'iris-data', namespace,
      steps: [step('load', { command: sh('printf "5.1,3.5,1.4,0.2,setosa\\n" > /ferry/outputs/iris_csv'), outputs: [{ name: 'iris_csv', type: 'dataset' }] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'iris-data-1', namespace, pipeline: 'iris-data' }));
    assert.equal((await finished('iris-data-1')).status?.phase, 'Succeeded');
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'iris-predict', namespace,
      steps: [step('predict', {
        inputs: [{ name: 'model', model: { name: 'iris', stage: 'Production' } }],
        command: sh('cat /ferry/inputs/model > /ferry/outputs/report'), outputs: [{ name: 'report', type: 'file' }],
      })],
    }));
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'iris-train', namespace,
      parameters: [{ name: 'accuracy', type: 'float' }],
      inference: { pipelineRef: { name: 'iris-predict' } },
      promotion: [{ model: 'iris', stage: 'Production', when: [{ metric: 'accuracy', operator: '>=', value: 0.9 }], betterThanCurrent: { metric: 'accuracy', direction: 'Higher' } }],
      steps: [step('train', {
        parameters: ['accuracy'],
        inputs: [{ name: 'data', fromPipeline: { name: 'iris-data', step: 'load', output: 'iris_csv' } }],
        command: sh('test -s /ferry/inputs/data && echo "model trained to $FERRY_PARAM_ACCURACY by $FERRY_RUN" > /ferry/outputs/model && echo "{\\"accuracy\\": $FERRY_PARAM_ACCURACY}" > /ferry/outputs/metrics.json'),
        outputs: [{ name: 'model', type: 'model', register: { name: 'iris' } }],
      })],
    }));
  });

  it('registers iris-v1 and promotes it by threshold, then a better iris-v2 replaces it and a worse one stays None', async () => {
    await cluster.client.create(PIPELINE_RUNS, namespace, train('iris-train-1', 0.93));
    assert.equal((await finished('iris-train-1')).status?.phase, 'Succeeded');
    const v1 = await eventually('iris-v1 in Production', async () => ((await version('iris-v1')).status?.stage === 'Production' ? version('iris-v1') : undefined));
    assert.deepEqual(v1.spec.metrics, { accuracy: 0.93 });
    assert.equal(v1.spec.source?.run, 'iris-train-1');
    assert.equal(v1.spec.inference?.pipeline, 'iris-predict');
    assert.match(v1.status?.history?.at(-1)?.reason ?? '', /promoted to Production: accuracy 0.93 >= 0.9/);
    const registered = await eventually('ModelsRegistered=True on iris-train-1', async () => {
      const condition = (await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'iris-train-1')).status?.conditions?.find((c) => c.type === 'ModelsRegistered');
      return condition?.status === 'True' ? condition : undefined;
    });
    assert.deepEqual([registered.reason, registered.message], ['Registered', 'registered iris-v1']);

    await cluster.client.create(PIPELINE_RUNS, namespace, train('iris-train-2', 0.97));
    await finished('iris-train-2');
    await eventually('iris-v2 in Production and iris-v1 Archived', async () =>
      (await version('iris-v2')).status?.stage === 'Production' && (await version('iris-v1')).status?.stage === 'Archived' ? true : undefined);
    assert.match((await version('iris-v2')).status?.history?.at(-1)?.reason ?? '', /accuracy 0.97 > 0.93 of iris-v1/);
    assert.match((await version('iris-v1')).status?.history?.at(-1)?.reason ?? '', /replaced in Production by iris-v2/);

    await cluster.client.create(PIPELINE_RUNS, namespace, train('iris-train-3', 0.95));
    await finished('iris-train-3');
    const v3 = await eventually('iris-v3', async () => ((await version('iris-v3')).status?.stage ? version('iris-v3') : undefined));
    assert.equal(v3.spec.stage, 'None');
    assert.match(v3.status?.history?.at(-1)?.reason ?? '', /not promoted to Production: not accuracy 0.95 > 0.97 of iris-v2/);
  });

  it('moves a version by kubectl patch of spec.stage, archiving the old one, and hands aliases to the newest holder', async () => {
    await cluster.kubectlOk(['-n', namespace, 'patch', 'modelversion', 'iris-v3', '--type=merge', '-p', '{"spec":{"stage":"Production"}}']);
    await eventually('iris-v3 in Production, iris-v2 Archived', async () =>
      (await version('iris-v3')).status?.stage === 'Production' && (await version('iris-v2')).status?.stage === 'Archived' ? true : undefined);
    const last = (await version('iris-v3')).status?.history?.at(-1);
    assert.equal(last?.by, 'kubectl-patch');
    assert.equal((await cluster.client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.filter((v) => v.spec.modelName === 'iris' && v.spec.stage === 'Production').length, 1);
    await cluster.kubectlOk(['-n', namespace, 'patch', 'modelversion', 'iris-v1', '--type=merge', '-p', '{"spec":{"aliases":["champion"]}}']);
    await eventually('iris-v1 holds champion', async () => ((await version('iris-v1')).status?.aliases?.includes('champion') ? true : undefined));
    await cluster.kubectlOk(['-n', namespace, 'patch', 'modelversion', 'iris-v3', '--type=merge', '-p', '{"spec":{"aliases":["champion"]}}']);
    await eventually('champion moved to iris-v3', async () =>
      (await version('iris-v3')).status?.aliases?.includes('champion') && !(await version('iris-v1')).spec.aliases?.includes('champion') ? true : undefined);
    // Put iris-v2 back in Production for the tests that follow.
    await cluster.kubectlOk(['-n', namespace, 'patch', 'modelversion', 'iris-v2', '--type=merge', '-p', '{"spec":{"stage":"Production"}}']);
    await eventually('iris-v2 back in Production', async () => ((await version('iris-v2')).status?.stage === 'Production' && (await version('iris-v3')).status?.stage === 'Archived' ? true : undefined));
  });

  it('runs inference on the Production model, its digest frozen in the configuration', async () => {
    const v2 = await version('iris-v2');
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'iris-predict-1', namespace, pipeline: 'iris-predict' }));
    const run = await finished('iris-predict-1');
    assert.equal(run.status?.phase, 'Succeeded');
    const configuration = JSON.parse((await openArtifactStore(`file://${storeDir}`).readAll(run.status!.configuration!.uri, 1 << 20)).toString()) as PipelineConfiguration;
    assert.deepEqual(configuration.externalInputs.map((e) => [e.model?.name, e.model?.version, e.digest]), [['iris', 2, v2.spec.artifact.digest]]);
    // Bound inference: a run that names only the model runs the pipeline bound to it.
    await cluster.client.create(PIPELINE_RUNS, namespace, { ...pipelineRun({ name: 'iris-bound-1', namespace, pipeline: 'unused' }), spec: { modelRef: { name: 'iris', version: 1 } } });
    const bound = await finished('iris-bound-1');
    assert.equal(bound.status?.pipeline?.name, 'iris-predict');
    const boundConfiguration = JSON.parse((await openArtifactStore(`file://${storeDir}`).readAll(bound.status!.configuration!.uri, 1 << 20)).toString()) as PipelineConfiguration;
    assert.equal(boundConfiguration.externalInputs[0]?.digest, (await version('iris-v1')).spec.artifact.digest);
  });

  it('fails a run that needs a model that does not exist, saying which', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'needs-missing', namespace,
      steps: [step('use', { inputs: [{ name: 'm', model: { name: 'penguins', alias: 'champion' } }] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'needs-missing-1', namespace, pipeline: 'needs-missing' }));
    const condition = (await finished('needs-missing-1')).status?.conditions?.[0];
    assert.equal(condition?.reason, 'ModelNotFound');
    assert.match(condition?.message ?? '', /step "use" input "m": model "penguins" with alias "champion" does not exist \(no versions are registered\)/);
  });

  it('answers lineage queries: what produced iris-v2, and what was trained from the dataset', async () => {
    const store = new PostgresMetadataStore(databaseUrl);
    try {
      const provenance = await eventually('iris-v2 lineage', async () => store.modelProvenance(namespace, 'iris', 2));
      assert.equal(provenance.run.name, 'iris-train-2');
      assert.equal(provenance.step, 'train');
      const data = (await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'iris-data-1')).status?.steps?.[0]?.outputs?.[0];
      assert.deepEqual(provenance.datasets.map((d: { digest: string }) => d.digest), [data?.digest]);
      const trained = await store.modelsTrainedFrom(namespace, data!.digest);
      assert.deepEqual(trained.map((m: { version: number }) => m.version).sort(), [1, 2, 3]);
    } finally {
      await store.close();
    }
  });

  it('shows a refused registration on the run as ModelsRegistered=False, and registers once the refusal is gone', async () => {
    // A real refusal by the API server: an admission policy that denies ModelVersions of "penguins".
    const policy = `deny-penguins-${namespace}`;
    const manifests = [
      { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: policy }, spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: ['ferry.dev'], apiVersions: ['*'], operations: ['CREATE'], resources: ['modelversions'] }] },
        validations: [{ expression: "object.spec.modelName != 'penguins'", message: 'penguins are not registered in this namespace' }],
      } },
      { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: policy }, spec: {
        policyName: policy, validationActions: ['Deny'],
        matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } } },
      } },
    ];
    await cluster.kubectlOk(['apply', '-f', '-'], manifests.map((m) => JSON.stringify(m)).join('\n'));
    const probe = { apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion', metadata: { name: 'penguins-v99', namespace },
      spec: { modelName: 'penguins', version: 99, artifact: { uri: 'file:///x', digest: `sha256:${'0'.repeat(64)}` } } };
    await eventually('the policy in force', async () =>
      (await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(probe))).stderr.includes('penguins are not registered') ? true : undefined);

    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'penguins-train', namespace,
      steps: [step('train', { command: sh('echo weights > /ferry/outputs/model'), outputs: [{ name: 'model', type: 'model', register: { name: 'penguins' } }] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'penguins-train-1', namespace, pipeline: 'penguins-train' }));
    const run = () => cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'penguins-train-1');
    const registered = async () => (await run()).status?.conditions?.find((c) => c.type === 'ModelsRegistered');
    const refused = await eventually('ModelsRegistered=False', async () => ((await registered())?.status === 'False' ? registered() : undefined), 60_000);
    assert.equal(refused?.reason, 'RegistrationFailed');
    assert.match(refused?.message ?? '', /cannot register the run's models: .*penguins are not registered in this namespace/);
    assert.equal((await run()).status?.phase, 'Succeeded', 'the step itself succeeded');
    await eventually('a Warning Event saying why', async () => {
      const names = await cluster.kubectlOk(['-n', namespace, 'get', 'events', '--field-selector', 'involvedObject.name=penguins-train-1,reason=RegistrationFailed,type=Warning', '-o', 'name']);
      return names.trim() !== '' ? true : undefined;
    });

    await cluster.kubectlOk(['delete', 'validatingadmissionpolicybinding', policy]);
    const ok = await eventually('ModelsRegistered=True', async () => ((await registered())?.status === 'True' ? registered() : undefined), 90_000);
    assert.equal(ok?.reason, 'Registered');
    assert.equal(ok?.message, 'registered penguins-v1');
    const refusals = await cluster.kubectlOk(['-n', namespace, 'get', 'events', '--field-selector', 'involvedObject.name=penguins-train-1,reason=RegistrationFailed', '-o', 'name']);
    assert.equal(refusals.trim().split('\n').length, 1, `one Event for the refusal, not one per retry: ${refusals}`);
    assert.equal((await version('penguins-v1')).spec.source?.run, 'penguins-train-1');
    await cluster.kubectlOk(['delete', 'validatingadmissionpolicy', policy]);
  });

  it('gives twenty concurrent registering runs twenty distinct versions', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `iris-many-${i}`);
    await Promise.all(names.map((n) => cluster.client.create(PIPELINE_RUNS, namespace, train(n, 0.5))));
    const runs = await Promise.all(names.map((n) => finished(n, 180_000)));
    assert.ok(runs.every((r) => r.status?.phase === 'Succeeded'));
    const versions = runs.flatMap((r) => r.status?.steps?.flatMap((s) => s.models ?? []) ?? []).map((m) => m.version);
    assert.equal(new Set(versions).size, 20, `versions: ${versions.join(',')}`);
    assert.ok(versions.every((v) => v >= 4 && v <= 23));
  });
});

describe('resume and outage', () => {
  it('resumes a failed run: only the failed step and what follows it run again', async () => {
    const gate = join(flags, 'gate');
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'flaky-chain', namespace,
      steps: [
        step('one', { command: sh('echo 1 > /ferry/outputs/o'), outputs: [{ name: 'o', type: 'file' }], cache: { policy: 'Disabled' } }),
        step('two', { dependsOn: ['one'], command: sh(`test -f ${gate}`), cache: { policy: 'Disabled' } }),
        step('three', { dependsOn: ['two'], command: sh('true'), cache: { policy: 'Disabled' } }),
      ],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'chain-1', namespace, pipeline: 'flaky-chain' }));
    assert.deepEqual(phases(await finished('chain-1')), { one: 'Succeeded', two: 'Failed', three: 'Skipped' });
    await writeFile(gate, 'open');
    await cluster.client.create(PIPELINE_RUNS, namespace, { ...pipelineRun({ name: 'chain-1-resumed', namespace, pipeline: 'unused' }), spec: { resumeFrom: 'chain-1' } });
    const resumed = await finished('chain-1-resumed');
    assert.deepEqual(phases(resumed), { one: 'Cached', two: 'Succeeded', three: 'Succeeded' });
    assert.deepEqual(await podsOf('chain-1-resumed'), ['three', 'two']);
  });

  it('keeps runs going while PostgreSQL is down and records everything once it is back', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'outage', namespace,
      steps: [step('a', { command: sh('sleep 1; echo a > /ferry/outputs/x'), outputs: [{ name: 'x', type: 'file' }] }), step('b', { dependsOn: ['a'], command: sh('true') })],
    }));
    await postgres.kill();
    try {
      await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'outage-1', namespace, pipeline: 'outage' }));
      const run = await finished('outage-1');
      assert.equal(run.status?.phase, 'Succeeded');
      assert.ok(operator.logs.some((l) => l.msg === 'lost metadata database'), 'the operator noticed the database was gone');
    } finally {
      await postgres.start();
    }
    const recorded = await eventually('outage-1 recorded after PostgreSQL came back', async () => {
      const rows = await query<{ phase: string; executions: string }>(
        'select r.phase, (select count(*) from step_executions e where e.run_uid = r.uid) executions from runs r where r.name = $1', ['outage-1']);
      return rows[0]?.phase === 'Succeeded' ? rows[0] : undefined;
    }, 60_000, 500);
    assert.equal(recorded.executions, '2');
    assert.ok(operator.logs.some((l) => l.msg === 'replaying metadata records'), 'the runs that waited were enqueued when the database answered');
  });
});
