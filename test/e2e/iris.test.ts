// End to end, in real Pods: the local single-node cluster, Ferry installed with its Helm chart
// (operator image by digest, PostgreSQL, a file:// store on a hostPath volume), and the iris
// example of manifests/examples/iris: two training runs sweeping different values of c (a
// forEach step, one Pod per item; a fan-in step reading every item's model and results; a
// `when` gate on registration; a finally summary), the better model promoted, batch inference
// pinned to the Production digest, every artifact's sha256 checked on disk (each item's too),
// the operator Pod deleted mid-run without duplicate step Pods, a `when` that is false, the
// step cache on repeated runs, and `kubectl get pipelineruns` columns. Ferry is installed in
// ferry-system and the pipelines run in tenant namespaces: a second tenant can neither read the
// first one's artifacts (by URI, by digest, through reproduceFrom or a hand-made ModelVersion)
// nor find a store credential in its step. Needs root on Linux.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import type { PipelineRun, StepStatus } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { extractArtifact } from '../../operator/agent/tar.ts';
import type { PipelineConfiguration } from '../../operator/configuration/pipeline-configuration.ts';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { MODEL_VERSIONS, PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { applyPipelines, loadExample, startRun, type Example } from '../../scripts/demo/examples.ts';
import { setUpLocal, type LocalSetup } from '../../scripts/demo/local.ts';
import { RunProgress } from '../../scripts/demo/progress.ts';
import { eventually } from '../harness/cluster.ts';
import { E2E_WORK_DIR, e2eLog, hostPathOf, kubectlOk as kubectlOkIn, ready as readySetup } from './local-cluster.ts';

if (process.platform !== 'linux' || process.getuid?.() !== 0) {
  throw new Error('test/e2e runs a real kubelet, containerd and kube-proxy: it needs root on Linux (CI runs it as root); npm test leaves it out elsewhere');
}

/** The tenant whose pipelines the example runs; Ferry itself is installed in ferry-system. */
const namespace = 'team-a';
const installNamespace = 'ferry-system';
/** Another tenant, which tries to reach team-a's objects. */
const intruder = 'team-b';
const runTimeoutMs = 10 * 60_000;
const log = e2eLog;
const workDir = E2E_WORK_DIR;

let setup: LocalSetup | undefined;
let client: KubeClient;
let progress: RunProgress;
let intruderProgress: RunProgress;
let example: Example;
const finished = new Map<string, PipelineRun>();

before(async () => {
  setup = await setUpLocal({ namespace: installNamespace, release: 'ferry', workDir, log });
  client = new KubeClient(loadKubeConfig(setup.cluster.kubeconfigPath), { qps: 20, burst: 40, fieldManager: 'ferry-e2e' });
  for (const tenant of [namespace, intruder]) await setup.cluster.kubectl(['create', 'namespace', tenant]);
  example = await loadExample(setup.cluster.registry);
  await applyPipelines(setup.cluster, namespace, example.pipelines);
  progress = new RunProgress(client, namespace, log);
  await progress.start();
  intruderProgress = new RunProgress(client, intruder, log);
  await intruderProgress.start();
}, { timeout: 1_800_000 }); // a first run builds the node binaries and the example image (minutes)

after(async () => {
  await progress?.stop();
  await intruderProgress?.stop();
  const report = await setup?.cluster.stop();
  assert.deepEqual(report?.failed ?? [], [], 'the cluster left something behind');
});

const ready = (): LocalSetup => readySetup(setup);
const kubectlOk = (args: string[]): Promise<string> => kubectlOkIn(setup, args);

/** The host file behind a file:///var/lib/ferry/artifacts/… URI (the hostPath volume). */
const hostPath = (uri: string): string => hostPathOf(setup, uri);

/** The text of a one-file artifact (a tar holding that file) in the store. */
async function artifactText(uri: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-e2e-artifact-'));
  try {
    await extractArtifact(createReadStream(hostPath(uri)), join(dir, 'file'));
    return await readFile(join(dir, 'file'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function stepPods(run: string): Promise<Array<{ step: string; item?: string; attempt: string; name: string }>> {
  return stepPodsIn(namespace, run);
}

async function stepPodsIn(ns: string, run: string): Promise<Array<{ step: string; item?: string; attempt: string; name: string }>> {
  const pods = await client.list<{ metadata: { name: string; labels?: Record<string, string> } }>(PODS, ns, `ferry.dev/run=${run}`);
  return pods.items.map((p) => {
    const labels = p.metadata.labels ?? {};
    const item = labels['ferry.dev/item'];
    return { step: labels['ferry.dev/step'] ?? '', ...(item !== undefined ? { item } : {}), attempt: labels['ferry.dev/attempt'] ?? '', name: p.metadata.name };
  });
}

/** The Pods a step that ran should have: one, or one per item of a forEach step, each on its first attempt. */
function expectedPods(step: StepStatus): Array<{ item?: string; attempt: string }> {
  if (step.items) return Array.from({ length: step.items.total }, (_, i) => ({ item: String(i), attempt: '1' }));
  return [{ attempt: '1' }];
}

function stepOf(run: PipelineRun, name: string): StepStatus {
  const step = run.status?.steps?.find((s) => s.name === name);
  assert.ok(step, `run ${run.metadata.name} has step ${name}: ${JSON.stringify(run.status?.steps?.map((s) => s.name))}`);
  return step;
}

/** The sweep as the fan-in step's results hold it. */
function sweepOf(run: PipelineRun): { entries: Array<{ index: number; c: number; accuracy: number }>; best: number; bestC: number; bestAccuracy: number } {
  const results = stepOf(run, 'pick').results ?? {};
  return { entries: JSON.parse(results.sweep ?? '[]'), best: Number(results.best_index), bestC: Number(results.best_c), bestAccuracy: Number(results.best_accuracy) };
}

/** The held-out accuracy: the metrics of the step that registered the model. */
function accuracyOf(run: PipelineRun): number {
  const registering = (run.status?.steps ?? []).filter((s) => (s.models ?? []).length > 0);
  assert.equal(registering.length, 1, `run ${run.metadata.name} registers its model from exactly one step`);
  const accuracy = registering[0]!.metrics?.accuracy;
  assert.equal(typeof accuracy, 'number', `step ${registering[0]!.name} reports accuracy`);
  return accuracy!;
}

test('two training runs with different parameters; the operator Pod is deleted mid-run and no step runs twice', async () => {
  assert.ok(example.trainingRuns.length >= 2, 'the example has two training runs');
  const [first, second] = example.trainingRuns as [PipelineRun, PipelineRun];
  assert.notDeepEqual(first.spec.parameters, second.spec.parameters);
  const a = await startRun(client, namespace, first);
  const b = await startRun(client, namespace, second);

  // Once a step of b runs in a Pod, delete the operator's Pod: the Deployment replaces it, the
  // new operator takes the Lease and carries both runs on from what the API server holds.
  await eventually('a step of the second run Running', async () => progress.get(b)?.status?.steps?.some((s) => s.phase === 'Running') || undefined, 120_000, 200);
  const operatorPods = JSON.parse(await kubectlOk(['-n', installNamespace, 'get', 'pods', '-l', 'app.kubernetes.io/component=operator', '-o', 'json'])) as { items: Array<{ metadata: { name: string } }> };
  assert.equal(operatorPods.items.length, 1);
  await kubectlOk(['-n', installNamespace, 'delete', 'pod', operatorPods.items[0]!.metadata.name, '--wait=true']);
  await eventually('a new operator Pod Ready', async () => {
    const out = await kubectlOk(['-n', installNamespace, 'get', 'pods', '-l', 'app.kubernetes.io/component=operator', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    return out.split('\n').some((l) => l.endsWith('=True') && !l.startsWith(`${operatorPods.items[0]!.metadata.name}=`)) || undefined;
  }, 180_000, 500);

  for (const run of await progress.finished([a, b], runTimeoutMs)) {
    finished.set(run.metadata.name, run);
    assert.equal(run.status?.phase, 'Succeeded', `${run.metadata.name}: ${run.status?.conditions?.[0]?.message}`);
    // A step ran in exactly one Pod (a forEach step in one per item), on its first attempt, or
    // (prepare, shared by the two runs) came from the other run's execution with none.
    const pods = await stepPods(run.metadata.name);
    for (const step of run.status?.steps ?? []) {
      const mine = pods.filter((p) => p.step === step.name).map(({ item, attempt }) => ({ ...(item !== undefined ? { item } : {}), attempt }));
      mine.sort((x, y) => Number(x.item ?? 0) - Number(y.item ?? 0));
      if (step.phase === 'Cached') assert.deepEqual(mine, [], `${run.metadata.name}/${step.name} is Cached and has no Pod`);
      else assert.deepEqual(mine, expectedPods(step), `${run.metadata.name}/${step.name}: one Pod per item, none twice: ${JSON.stringify(pods)}`);
    }
    // The sweep: one item per value of c, each with its result; pick took the best and said so.
    const cs = JSON.parse(String(run.spec.parameters?.find((p) => p.name === 'cs')?.value)) as number[];
    assert.deepEqual(stepOf(run, 'train').items, { total: cs.length, pending: 0, running: 0, succeeded: cs.length, failed: 0 });
    const sweep = sweepOf(run);
    assert.deepEqual(sweep.entries.map((e) => [e.index, e.c]), cs.map((c, i) => [i, c]), `${run.metadata.name}: pick saw every item in order`);
    const best = sweep.entries.find((e) => e.index === sweep.best)!;
    assert.ok(sweep.entries.every((e) => e.accuracy <= best.accuracy), `${run.metadata.name}: pick took the best of ${JSON.stringify(sweep.entries)}`);
    assert.deepEqual([best.c, best.accuracy], [sweep.bestC, sweep.bestAccuracy]);
    // register ran (its when held), registered the picked model; the finally summary says so.
    const register = stepOf(run, 'register');
    assert.equal(register.phase, 'Succeeded', `${run.metadata.name}/register: ${register.message}`);
    assert.equal(register.metrics?.c, best.c, 'the registered model is the picked one');
    assert.equal(stepOf(run, 'pick').outputs?.find((o) => o.name === 'model')?.digest, register.outputs?.find((o) => o.name === 'model')?.digest, 'register wrote the picked model unchanged');
    const summary = JSON.parse(await artifactText(stepOf(run, 'summary').outputs!.find((o) => o.name === 'summary')!.uri)) as { status: string; best: { c: number; cv_accuracy: number }; sweep: unknown[] };
    assert.deepEqual([summary.status, summary.best.c, summary.best.cv_accuracy, summary.sweep.length], ['Succeeded', best.c, best.accuracy, cs.length]);
  }
  assert.notEqual(accuracyOf(finished.get(a)!), accuracyOf(finished.get(b)!), 'the parameters change the result');
});

test('the better model is promoted to Production, the other is not', async () => {
  const runs = [...finished.values()];
  const versions = await eventually('both ModelVersions with a stage', async () => {
    const all = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.filter((v) => runs.some((r) => r.metadata.name === v.spec.source?.run));
    return all.length === 2 && all.every((v) => v.status?.stage !== undefined) ? all : undefined;
  }, 60_000, 500);
  const best = versions.reduce((x, y) => ((x.spec.metrics?.accuracy ?? 0) >= (y.spec.metrics?.accuracy ?? 0) ? x : y));
  const other = versions.find((v) => v !== best)!;
  assert.ok((best.spec.metrics?.accuracy ?? 0) >= 0.9, `best accuracy ${best.spec.metrics?.accuracy} passes the 0.9 bar`);
  assert.equal(best.status?.stage, 'Production', `${best.metadata.name}: ${best.status?.history?.at(-1)?.reason}`);
  assert.notEqual(other.status?.stage, 'Production', `${other.metadata.name}: ${other.status?.history?.at(-1)?.reason}`);
  const production = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.filter((v) => v.spec.modelName === best.spec.modelName && v.status?.stage === 'Production');
  assert.deepEqual(production.map((v) => v.metadata.name), [best.metadata.name], 'exactly one Production version');
});

test('batch inference runs on the Production model, its digest frozen in the configuration', async () => {
  assert.ok(example.inferenceRuns.length >= 1);
  const name = await startRun(client, namespace, example.inferenceRuns[0]!);
  const [run] = await progress.finished([name], runTimeoutMs);
  finished.set(name, run!);
  assert.equal(run!.status?.phase, 'Succeeded', run!.status?.conditions?.[0]?.message);
  const production = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.find((v) => v.status?.stage === 'Production');
  assert.ok(production);
  const configuration = JSON.parse(await readFile(hostPath(run!.status!.configuration!.uri), 'utf8')) as PipelineConfiguration;
  assert.deepEqual(configuration.externalInputs.map((e) => [e.model?.name, e.model?.version, e.digest]),
    [[production.spec.modelName, production.spec.version, production.spec.artifact.digest]]);
  const report = run!.status?.steps?.flatMap((s) => s.outputs ?? []).find((o) => o.name === 'report');
  assert.ok(report, 'the inference run wrote a report');
});

test('every artifact and frozen configuration on disk has the sha256 its run reports', async () => {
  let checked = 0;
  for (const run of finished.values()) {
    const configuration = run.status?.configuration;
    assert.ok(configuration);
    assert.equal(await sha256Of(hostPath(configuration.uri)), configuration.digest, `${run.metadata.name} configuration`);
    checked++;
    for (const output of (run.status?.steps ?? []).flatMap((s) => s.outputs ?? [])) {
      assert.equal(await sha256Of(hostPath(output.uri)), output.digest, `${run.metadata.name} output ${output.name}`);
      checked++;
    }
    // A forEach step's collection, and every item's outputs it names.
    for (const step of (run.status?.steps ?? []).filter((s) => s.collection)) {
      const collection = step.collection!;
      assert.equal(await sha256Of(hostPath(collection.uri)), collection.digest, `${run.metadata.name}/${step.name} collection`);
      checked++;
      const { items } = JSON.parse(await readFile(hostPath(collection.uri), 'utf8')) as { items: Array<{ index: number; outputs: Array<{ name: string; uri: string; digest: string }> }> };
      assert.equal(items.length, step.items?.succeeded, `${run.metadata.name}/${step.name}: an entry per succeeded item`);
      for (const item of items) {
        for (const output of item.outputs) {
          assert.equal(await sha256Of(hostPath(output.uri)), output.digest, `${run.metadata.name}/${step.name}[${item.index}] output ${output.name}`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked >= 20, `checked ${checked} files`);
});

/** A step of team-b that tries team-a's artifact through the artifact server, and looks for credentials. */
const PROBE = String.raw`
import json, os, urllib.request, urllib.error
target = os.environ["TARGET"]
def status(url):
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return -1
unsigned = status(target)
forged = status(target + "?method=GET&expires=9999999999&signature=" + "A" * 43)
digest_statuses = {status(os.environ["SERVER"] + "/v1/objects/" + path) for path in os.environ["DIGEST_PATHS"].split(",")}
by_digest = digest_statuses.pop() if len(digest_statuses) == 1 else -2  # -2: the paths were answered differently
secrets = [k for k in os.environ if any(w in k for w in ("CREDENTIAL", "ARTIFACT_STORE", "SIGNING", "DATABASE", "GCS"))]
files = [p for p in ("/var/run/secrets/kubernetes.io", "/var/run/secrets/ferry", "/var/lib/ferry/artifacts") if os.path.exists(p)]
json.dump({"unsigned_status": unsigned, "forged_status": forged, "by_digest_status": by_digest, "credentials_found": len(secrets) + len(files)}, open("/ferry/outputs/metrics.json", "w"))
print(json.dumps({"unsigned": unsigned, "forged": forged, "secrets": secrets, "files": files}))
`;

test('tenancy: team-b cannot read team-a\'s artifacts by URI, by digest, through reproduceFrom or a hand-made ModelVersion, and its step holds no store credential', async () => {
  const trained = [...finished.values()].find((r) => r.spec.pipelineRef?.name?.includes('train'));
  assert.ok(trained, 'a training run of team-a finished');
  const output = (trained.status?.steps ?? []).flatMap((s) => s.outputs ?? [])[0]!;
  const key = output.uri.replace('file:///var/lib/ferry/artifacts/', '');
  assert.ok(key.startsWith(`${namespace}/`), `team-a's output ${output.uri} is under its namespace`);
  const image = example.pipelines[0]!.spec.steps[0]!.image;
  // By cluster IP: the local cluster runs no DNS.
  const ip = (await kubectlOk(['-n', installNamespace, 'get', 'service', 'ferry-artifacts', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const server = `http://${ip}:8081`;
  await client.create(PIPELINES, intruder, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'Pipeline', metadata: { name: 'probe', namespace: intruder },
    spec: { steps: [{ name: 'probe', image, command: ['python3', '-c', PROBE], env: [
      { name: 'TARGET', value: `${server}/v1/objects/${key}` },
      { name: 'SERVER', value: server },
      // By digest: team-a's blob name, in team-a's part of the store and at the legacy root.
      { name: 'DIGEST_PATHS', value: [`${namespace}/blobs/sha256/${output.digest.slice(7)}`, `blobs/sha256/${output.digest.slice(7)}`].join(',') },
    ] }] },
  } as never);
  const probe = await startRun(client, intruder, { apiVersion: 'ferry.dev/v1alpha1', kind: 'PipelineRun', metadata: { name: '', generateName: 'probe-' }, spec: { pipelineRef: { name: 'probe' } } } as PipelineRun);
  const reproduce = await startRun(client, intruder, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'PipelineRun', metadata: { name: '', generateName: 'steal-config-' },
    spec: { reproduceFrom: { configuration: trained.status!.configuration! } },
  } as PipelineRun);
  // A ModelVersion made by hand in team-b naming team-a's model artifact, used by an inference run.
  const stolen = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.find((v) => v.status?.stage === 'Production')!;
  // The promotion guard wants a stage set by hand to name who set it.
  const me = (await kubectlOk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).trim();
  await client.create(MODEL_VERSIONS, intruder, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion',
    metadata: { name: `${stolen.spec.modelName}-v1`, namespace: intruder, annotations: { 'ferry.dev/stage-changed-by': me } },
    spec: { ...stolen.spec, version: 1, stage: 'Production', source: undefined, inference: undefined },
  } as never);
  const inference = example.pipelines.find((p) => p.spec.steps.some((s) => (s.inputs ?? []).some((i) => i.model)))!;
  await applyPipelines(ready().cluster, intruder, [inference]);
  const viaModel = await startRun(client, intruder, example.inferenceRuns[0]!);

  const [probed, reproduced, modelled] = await intruderProgress.finished([probe, reproduce, viaModel], runTimeoutMs);
  finished.set(probe, probed!); // its Pod is one of the cluster's step Pods
  log(`probe: ${JSON.stringify(probed!.status?.steps?.[0]?.metrics)}`);
  assert.equal(probed!.status?.phase, 'Succeeded', probed!.status?.conditions?.[0]?.message);
  assert.deepEqual(probed!.status?.steps?.[0]?.metrics, { by_digest_status: 403, credentials_found: 0, forged_status: 403, unsigned_status: 403 });
  for (const [run, what] of [[reproduced!, 'reproduceFrom'], [modelled!, 'a hand-made ModelVersion']] as const) {
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(run.status?.phase, 'Failed', `${what}: ${JSON.stringify(run.status)}`);
    assert.equal(condition?.reason, 'CrossNamespaceReference', `${what}: ${condition?.message}`);
    assert.doesNotMatch(condition?.message ?? '', /sha256:/, `${what}: no digest disclosed`);
    assert.deepEqual(await stepPodsIn(intruder, run.metadata.name), [], `${what}: no Pod created`);
  }
  // The inference Pipeline's endpoint in team-b would serve the hand-made version: refused, nothing created.
  const refused = await waitForEndpoint(intruder, inference.metadata.name, 'CrossNamespaceReference', undefined, 60_000);
  assert.equal(refused.condition?.status, 'False');
  assert.doesNotMatch(refused.condition?.message ?? '', /sha256:/, 'no digest disclosed');
  assert.notEqual((await ready().cluster.kubectl(['-n', intruder, 'get', 'deployment', refused.service])).code, 0, 'no Deployment in team-b');
});

test('a repeated inference run comes from the step cache: every step Cached, no Pod', async () => {
  const name = await startRun(client, namespace, example.inferenceRuns[0]!);
  const [run] = await progress.finished([name], runTimeoutMs);
  finished.set(name, run!);
  assert.equal(run!.status?.phase, 'Succeeded');
  assert.ok((run!.status?.steps ?? []).length > 0);
  assert.deepEqual((run!.status?.steps ?? []).map((s) => s.phase).filter((p) => p !== 'Cached'), []);
  assert.deepEqual(await stepPods(name), []);
});

test('a repeated training run reuses what the step cache holds and registers no new version; a stricter min-accuracy skips register', async () => {
  const strictTemplate = example.trainingRuns.find((r) => r.spec.parameters?.some((p) => p.name === 'min-accuracy'));
  assert.ok(strictTemplate, 'the example has a training run that sets min-accuracy');
  const versionsBefore = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.length;
  const repeated = await startRun(client, namespace, example.trainingRuns[0]!);
  const strict = await startRun(client, namespace, strictTemplate);
  const [again, stricter] = await progress.finished([repeated, strict], runTimeoutMs);
  for (const run of [again!, stricter!]) {
    finished.set(run.metadata.name, run);
    assert.equal(run.status?.phase, 'Succeeded', `${run.metadata.name}: ${run.status?.conditions?.[0]?.message}`);
    const pods = await stepPods(run.metadata.name);
    for (const step of run.status?.steps ?? []) {
      if (step.phase !== 'Succeeded') assert.deepEqual(pods.filter((p) => p.step === step.name), [], `${run.metadata.name}/${step.name} is ${step.phase} and has no Pod`);
    }
    assert.equal(stepOf(run, 'prepare').phase, 'Cached');
    assert.ok((run.status?.steps ?? []).every((s) => (s.models ?? []).length === 0), `${run.metadata.name} registered nothing`);
  }
  // NOTE: forEach steps are not served from the step cache (docs/control-flow.md), and the
  // fan-in step reading their items misses it too; everything else is reused, register
  // included (pick writes the same model), so no Pod runs for it and nothing is registered.
  const ranAgain = (again!.status?.steps ?? []).filter((s) => s.phase !== 'Cached').map((s) => s.name);
  assert.ok(ranAgain.every((name) => name === 'train' || name === 'pick'), `only the sweep and its fan-in ran again: ${ranAgain.join(', ')}`);
  assert.equal(stepOf(again!, 'register').phase, 'Cached');
  assert.equal(stepOf(again!, 'summary').phase, 'Cached');
  // min-accuracy 0.99: the sweep is the same, register's when is false.
  const skipped = stepOf(stricter!, 'register');
  assert.deepEqual([skipped.phase, skipped.reason], ['Skipped', 'ConditionFalse'], skipped.message);
  assert.ok(sweepOf(stricter!).bestAccuracy < 0.99);
  const summary = JSON.parse(await artifactText(stepOf(stricter!, 'summary').outputs!.find((o) => o.name === 'summary')!.uri)) as { status: string; good_enough_to_register: boolean };
  assert.deepEqual([summary.status, summary.good_enough_to_register], ['Succeeded', false]);
  assert.equal((await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.length, versionsBefore, 'no new ModelVersion');
});

test('the step Pods ran the images by digest, the operator runs in the cluster', async () => {
  const pods = JSON.parse(await kubectlOk(['get', 'pods', '-A', '-o', 'json'])) as {
    items: Array<{ metadata: { namespace: string; labels?: Record<string, string> }; spec: { containers: Array<{ image: string }>; initContainers?: Array<{ image: string }> } }>;
  };
  const steps = pods.items.filter((p) => p.metadata.labels?.['ferry.dev/step'] !== undefined);
  const executed = [...finished.values()].flatMap((r) => r.status?.steps ?? []).filter((s) => s.phase === 'Succeeded')
    .reduce((n, s) => n + expectedPods(s).length, 0);
  assert.equal(steps.length, executed, 'a Pod for every step (every item of a forEach step) that ran, and no other');
  for (const pod of steps) {
    for (const container of [...pod.spec.containers, ...(pod.spec.initContainers ?? [])]) assert.match(container.image, /@sha256:[a-f0-9]{64}$/);
  }
  const operator = pods.items.filter((p) => p.metadata.labels?.['app.kubernetes.io/component'] === 'operator');
  assert.equal(operator.length, 1);
  assert.equal(operator[0]!.spec.containers[0]!.image, `${ready().ferryImage.repository}@${ready().ferryImage.digest}`);
});

test('kubectl get pipelineruns shows phase and progress', async () => {
  const out = await kubectlOk(['-n', namespace, 'get', 'pipelineruns']);
  const [header, ...rows] = out.trimEnd().split('\n');
  assert.match(header!, /^NAME\s+PIPELINE\s+PHASE\s+PROGRESS\s+AGE/);
  assert.ok(rows.length >= 6);
  const runs = new Map((await client.list<PipelineRun>(PIPELINE_RUNS, namespace)).items.map((r) => [r.metadata.name, r]));
  for (const row of rows) {
    const [, name, done, total] = /^(\S+)\s+(?:iris-train|iris-predict)\s+Succeeded\s+(\d+)\/(\d+)\s/.exec(row) ?? [];
    assert.ok(name, `every run Succeeded: ${row}`);
    // Progress counts the steps done (Succeeded or Cached); a run succeeds with steps skipped by their when.
    const notDone = (runs.get(name)?.status?.steps ?? []).filter((s) => s.phase !== 'Succeeded' && s.phase !== 'Cached');
    assert.equal(Number(total) - Number(done), notDone.length, row);
    assert.ok(notDone.every((s) => s.phase === 'Skipped' && s.reason === 'ConditionFalse'), `${name}: ${JSON.stringify(notDone)}`);
  }
});

// ---- serving: the iris-predict endpoint follows the registry ------------------------------

interface Prediction { model: { name: string; version: number; digest: string }; predictions: Array<{ species: string; probabilities: Record<string, number> }> }
const FLOWER = { sepal_length_cm: 6.3, sepal_width_cm: 2.9, petal_length_cm: 5.6, petal_width_cm: 1.8 };

/** The endpoint's Service by cluster IP (the local cluster runs no DNS), reached through kube-proxy's rules. */
async function endpointBase(ns: string, service: string): Promise<string> {
  const ip = (await kubectlOk(['-n', ns, 'get', 'service', service, '-o', 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}'])).trim();
  return `http://${ip}`;
}

/** One POST /predict on a connection of its own (a kept-alive one would outlive its Pod's endpoint). */
async function predict(base: string): Promise<Prediction> {
  const response = await fetch(`${base}/predict`, {
    method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify({ instances: [FLOWER] }), signal: AbortSignal.timeout(5000),
  });
  if (response.status !== 200) throw new Error(`POST /predict answered ${response.status}: ${await response.text()}`);
  return response.json() as Promise<Prediction>;
}

async function endpointStatus(ns: string, name: string): Promise<NonNullable<NonNullable<import('../../operator/api/v1alpha1/pipeline.ts').Pipeline['status']>['serving']> & { condition?: { status: string; reason: string; message: string } }> {
  const p = await client.get<import('../../operator/api/v1alpha1/pipeline.ts').Pipeline>(PIPELINES, ns, name);
  const condition = p.status?.conditions?.find((c) => c.type === 'Serving');
  return { ...p.status!.serving!, ...(condition ? { condition } : {}) };
}

const waitForEndpoint = (ns: string, name: string, reason: string, modelVersion?: string, timeoutMs = 5 * 60_000) =>
  eventually(`${ns}/${name} Serving=${reason}${modelVersion ? ` with ${modelVersion}` : ''}`, async () => {
    const s = await client.get<import('../../operator/api/v1alpha1/pipeline.ts').Pipeline>(PIPELINES, ns, name).then(() => endpointStatus(ns, name), () => undefined);
    return s?.condition?.reason === reason && (modelVersion === undefined || s.live?.modelVersion === modelVersion) ? s : undefined;
  }, timeoutMs, 1000);

/** Moves a version's stage by hand, as a person would (the promotion guard wants their name on it). */
async function setStage(name: string, stage: string): Promise<void> {
  const me = (await kubectlOk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).trim();
  await kubectlOk(['-n', namespace, 'annotate', '--overwrite', 'modelversion', name, `ferry.dev/stage-changed-by=${me}`]);
  await kubectlOk(['-n', namespace, 'patch', 'modelversion', name, '--type=merge', '-p', JSON.stringify({ spec: { stage } })]);
}

const productionVersion = async () => (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.find((v) => v.spec.modelName === 'iris' && v.spec.stage === 'Production')!;

test('the iris endpoint answers POST /predict through its Service with the Production version, and describes itself', async () => {
  const production = await productionVersion();
  const status = await waitForEndpoint(namespace, 'iris-predict', 'Live', production.metadata.name);
  const base = await endpointBase(namespace, status.service);
  const answer = await predict(base);
  log(`POST /predict → ${JSON.stringify(answer)}`);
  assert.deepEqual(answer.model, { name: 'iris', version: production.spec.version, digest: production.spec.artifact.digest });
  assert.ok(['setosa', 'versicolor', 'virginica'].includes(answer.predictions[0]!.species));
  assert.ok(Math.abs(Object.values(answer.predictions[0]!.probabilities).reduce((a, b) => a + b, 0) - 1) < 1e-4, "probabilities sum to 1 (rounded to 6 places)");
  const openapi = await (await fetch(`${base}/openapi.json`, { signal: AbortSignal.timeout(5000) })).json() as { paths: Record<string, unknown> };
  assert.ok('/predict' in openapi.paths && '/healthz' in openapi.paths, Object.keys(openapi.paths).join(', '));
  // The agent fetched the model it names, digest checked; the server image is pinned like step images.
  const deployment = JSON.parse(await kubectlOk(['-n', namespace, 'get', 'deployment', status.service, '-o', 'json'])) as { spec: { template: { spec: { containers: Array<{ image: string }>; initContainers: Array<{ image: string }> } } } };
  for (const c of [...deployment.spec.template.spec.containers, ...deployment.spec.template.spec.initContainers]) assert.match(c.image, /@sha256:[a-f0-9]{64}$/);
  const mv = await client.get<ModelVersion>(MODEL_VERSIONS, namespace, production.metadata.name);
  assert.deepEqual(mv.status?.endpoints?.map((e) => [e.name, e.state]), [['iris-predict', 'Live']]);
});

test('promoting the other version rolls the endpoint while a client sends requests: none fails; the operator killed mid-rollout', async () => {
  const before = await productionVersion();
  const other = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.find((v) => v.spec.modelName === 'iris' && v.metadata.name !== before.metadata.name && v.spec.source?.run)!;
  assert.ok(other, 'a second trained version exists');
  const base = await endpointBase(namespace, 'iris-predict');
  const answers: Array<{ at: number; version?: number; error?: string }> = [];
  let sending = true;
  const sender = (async () => {
    while (sending) {
      try {
        answers.push({ at: Date.now(), version: (await predict(base)).model.version });
      } catch (err) {
        answers.push({ at: Date.now(), error: err instanceof Error ? err.message : String(err) });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    await setStage(other.metadata.name, 'Production');
    await waitForEndpoint(namespace, 'iris-predict', 'RollingOut', before.metadata.name, 60_000);
    // The operator dies mid-rollout: its successor finishes the rollout from the Deployment.
    const operatorPod = (await kubectlOk(['-n', installNamespace, 'get', 'pods', '-l', 'app.kubernetes.io/component=operator', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    await kubectlOk(['-n', installNamespace, 'delete', 'pod', operatorPod, '--wait=false']);
    const live = await waitForEndpoint(namespace, 'iris-predict', 'Live', other.metadata.name);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    sending = false;
    await sender;
    const failed = answers.filter((a) => a.error);
    const switched = answers.find((a) => a.version === other.spec.version);
    log(`requests sent: ${answers.length}, failed: ${failed.length}, version changed at ${switched ? new Date(switched.at).toISOString() : 'never'}; live since ${live.live?.since}`);
    assert.deepEqual(failed, [], 'no request failed');
    assert.ok(answers.length >= 20, `${answers.length} requests`);
    assert.ok(switched, 'the new version answered');
    const last = answers.at(-1)!;
    assert.equal(last.version, other.spec.version);
    // While both Pods are ready, either may answer; only these two versions ever do.
    assert.deepEqual([...new Set(answers.map((a) => a.version))].sort(), [before.spec.version, other.spec.version].sort());
    const deployments = JSON.parse(await kubectlOk(['-n', namespace, 'get', 'deployments', '-l', 'ferry.dev/endpoint', '-o', 'json'])) as { items: Array<{ metadata: { name: string } }> };
    assert.deepEqual(deployments.items.map((d) => d.metadata.name), ['iris-predict'], 'one Deployment, no duplicate');
    assert.deepEqual(live.history?.slice(-2).map((h) => [h.modelVersion, h.until !== undefined]), [[before.metadata.name, true], [other.metadata.name, false]]);
  } finally {
    sending = false;
    await sender;
  }
});

test('a version whose server crashes on start is promoted: the old one keeps answering, and the conditions say why; bad serving specs leave nothing behind', async () => {
  const live = (await endpointStatus(namespace, 'iris-predict')).live!;
  const base = await endpointBase(namespace, 'iris-predict');
  // A version by hand whose artifact is not a model (a training run's evaluation metrics): serve.py exits 1 on start.
  const evaluation = [...finished.values()].flatMap((r) => r.status?.steps ?? []).flatMap((s) => s.outputs ?? []).find((o) => o.name === 'evaluation')!;
  assert.ok(evaluation, 'a training run wrote an evaluation');
  const versions = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.filter((v) => v.spec.modelName === 'iris');
  const broken = Math.max(...versions.map((v) => v.spec.version)) + 10;
  const me = (await kubectlOk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).trim();
  // Two more endpoints at once, so their waits overlap: a server that never opens its port, and an image that does not exist.
  const image = example.pipelines[0]!.spec.steps[0]!.image;
  const endpointPipeline = (name: string, serving: Record<string, unknown>, pinned: number) => ({
    apiVersion: 'ferry.dev/v1alpha1', kind: 'Pipeline', metadata: { name, namespace },
    spec: { steps: [{ name: 'noop', image, command: ['true'] }], serving: { model: { name: 'iris', version: pinned }, image, port: 8080, rolloutTimeoutSeconds: 45, ...serving } },
  });
  // The never-ready endpoint serves a version of its own (the live model's artifact, stage None): promoting the broken one archives the live one.
  const pinned = broken + 1;
  await client.create(MODEL_VERSIONS, namespace, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion', metadata: { name: `iris-v${pinned}`, namespace },
    spec: { modelName: 'iris', version: pinned, stage: 'None', artifact: { uri: (await client.get<ModelVersion>(MODEL_VERSIONS, namespace, live.modelVersion)).spec.artifact.uri, digest: live.digest } },
  } as never);
  await client.create(PIPELINES, namespace, endpointPipeline('iris-never-ready', { command: ['python3', '-c', 'import time; time.sleep(3600)'] }, pinned) as never);
  await client.create(PIPELINES, namespace, endpointPipeline('iris-no-image', { image: image.replace(/:[^:/]+$/, ':no-such-tag') }, pinned) as never);
  await client.create(MODEL_VERSIONS, namespace, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion',
    metadata: { name: `iris-v${broken}`, namespace, annotations: { 'ferry.dev/stage-changed-by': me } },
    spec: { modelName: 'iris', version: broken, stage: 'Production', artifact: { uri: evaluation.uri, digest: evaluation.digest } },
  } as never);

  const noImage = await waitForEndpoint(namespace, 'iris-no-image', 'ImageResolutionFailed', undefined, 120_000);
  log(`iris-no-image: ${noImage.condition?.message}`);
  assert.equal(noImage.condition?.status, 'False');
  assert.match(noImage.condition!.message, /no-such-tag/);
  const failed = await waitForEndpoint(namespace, 'iris-predict', 'RolloutFailed', live.modelVersion);
  log(`iris-predict: ${failed.condition?.message}`);
  assert.equal(failed.condition?.status, 'True', 'the previous version still answers');
  assert.match(failed.condition!.message, new RegExp(`iris-v${broken} cannot be served: not ready within 60 s: Pod \\S+: the server container it exited with code 1`));
  assert.match(failed.condition!.message, new RegExp(`${live.modelVersion} \\(sha256:[a-f0-9]{12}…\\) stays live`));
  assert.equal((await predict(base)).model.version, live.version, 'the previous version answers');
  const mv = await eventually('the broken version says it did not start', async () => {
    const v = await client.get<ModelVersion>(MODEL_VERSIONS, namespace, `iris-v${broken}`);
    return v.status?.conditions?.find((c) => c.type === 'Serving')?.reason === 'RolloutFailed' ? v : undefined;
  });
  log(`iris-v${broken}: ${mv.status?.conditions?.find((c) => c.type === 'Serving')?.message}`);
  assert.deepEqual(mv.status?.endpoints?.map((e) => [e.name, e.state]), [['iris-predict', 'RolloutFailed']]);

  const neverReady = await waitForEndpoint(namespace, 'iris-never-ready', 'RolloutFailed', undefined, 180_000);
  log(`iris-never-ready: ${neverReady.condition?.message}`);
  assert.equal(neverReady.condition?.status, 'False');
  assert.match(neverReady.condition!.message, /the server runs but GET \/healthz on port 8080 never answered 2xx; nothing is served/);
  for (const name of ['iris-never-ready', 'iris-no-image']) {
    for (const kind of ['deployment', 'service']) {
      const got = await ready().cluster.kubectl(['-n', namespace, 'get', kind, name]);
      assert.notEqual(got.code, 0, `no ${kind} ${name} left behind`);
    }
  }
});
