// End to end, in real Pods: the local single-node cluster, Ferry installed with its Helm chart
// (operator image by digest, PostgreSQL, a file:// store on a hostPath volume), and the iris
// example of manifests/examples/iris: two training runs with different parameters, the better
// model promoted, batch inference pinned to the Production digest, every artifact's sha256
// checked on disk, the operator Pod deleted mid-run without duplicate step Pods, the step
// cache on a repeated run, and `kubectl get pipelineruns` columns. Ferry is installed in
// ferry-system and the pipelines run in tenant namespaces: a second tenant can neither read the
// first one's artifacts (by URI, by digest, through reproduceFrom or a hand-made ModelVersion)
// nor find a store credential in its step. Needs root on Linux.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { PipelineConfiguration } from '../../operator/configuration/pipeline-configuration.ts';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { MODEL_VERSIONS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { applyPipelines, loadExample, startRun, type Example } from '../../scripts/demo/examples.ts';
import { setUpLocal, type LocalSetup } from '../../scripts/demo/local.ts';
import { RunProgress } from '../../scripts/demo/progress.ts';
import { eventually } from '../harness/cluster.ts';

if (process.platform !== 'linux' || process.getuid?.() !== 0) {
  throw new Error('test/e2e runs a real kubelet, containerd and kube-proxy: it needs root on Linux (CI runs it as root); npm test leaves it out elsewhere');
}

/** The tenant whose pipelines the example runs; Ferry itself is installed in ferry-system. */
const namespace = 'team-a';
const installNamespace = 'ferry-system';
/** Another tenant, which tries to reach team-a's objects. */
const intruder = 'team-b';
const runTimeoutMs = 10 * 60_000;
const log = (line: string): void => { if (process.env.FERRY_TEST_VERBOSE) console.error(`[e2e] ${line}`); };
// Its own work dir (registry data kept between runs, so a second run pushes nothing new); the
// machine's one cluster slot means a running demo cluster must be stopped first.
const workDir = join(process.env.FERRY_CACHE ?? join(homedir(), '.cache', 'ferry'), 'e2e-cluster');

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

function ready(): LocalSetup {
  assert.ok(setup, 'the local cluster and Ferry did not come up');
  return setup;
}

async function kubectlOk(args: string[]): Promise<string> {
  const result = await ready().cluster.kubectl(args);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** The host file behind a file:///var/lib/ferry/artifacts/… URI (the hostPath volume). */
function hostPath(uri: string): string {
  const prefix = 'file:///var/lib/ferry/artifacts/';
  assert.ok(uri.startsWith(prefix), `${uri} is not in the chart's file:// store`);
  return join(ready().layout.artifacts, uri.slice(prefix.length));
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function stepPods(run: string): Promise<Array<{ step: string; attempt: string; name: string }>> {
  return stepPodsIn(namespace, run);
}

async function stepPodsIn(ns: string, run: string): Promise<Array<{ step: string; attempt: string; name: string }>> {
  const pods = await client.list<{ metadata: { name: string; labels?: Record<string, string> } }>(PODS, ns, `ferry.dev/run=${run}`);
  return pods.items.map((p) => ({ step: p.metadata.labels?.['ferry.dev/step'] ?? '', attempt: p.metadata.labels?.['ferry.dev/attempt'] ?? '', name: p.metadata.name }));
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
    // A step ran in exactly one Pod, on its first attempt, or (prepare, shared by the two
    // runs) came from the other run's execution with none.
    const pods = await stepPods(run.metadata.name);
    for (const step of run.status?.steps ?? []) {
      const mine = pods.filter((p) => p.step === step.name);
      if (step.phase === 'Cached') assert.deepEqual(mine, [], `${run.metadata.name}/${step.name} is Cached and has no Pod`);
      else assert.deepEqual(mine.map((p) => p.attempt), ['1'], `${run.metadata.name}/${step.name}: one Pod, none twice: ${JSON.stringify(pods)}`);
    }
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
  }
  assert.ok(checked >= 10, `checked ${checked} files`);
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
});

test('a repeated training run comes from the step cache: every step Cached, no Pod', async () => {
  const name = await startRun(client, namespace, example.trainingRuns[0]!);
  const [run] = await progress.finished([name], runTimeoutMs);
  assert.equal(run!.status?.phase, 'Succeeded');
  assert.ok((run!.status?.steps ?? []).length > 0);
  assert.deepEqual((run!.status?.steps ?? []).map((s) => s.phase).filter((p) => p !== 'Cached'), []);
  assert.deepEqual(await stepPods(name), []);
});

test('the step Pods ran the images by digest, the operator runs in the cluster', async () => {
  const pods = JSON.parse(await kubectlOk(['get', 'pods', '-A', '-o', 'json'])) as {
    items: Array<{ metadata: { namespace: string; labels?: Record<string, string> }; spec: { containers: Array<{ image: string }>; initContainers?: Array<{ image: string }> } }>;
  };
  const steps = pods.items.filter((p) => p.metadata.labels?.['ferry.dev/step'] !== undefined);
  const executed = [...finished.values()].flatMap((r) => r.status?.steps ?? []).filter((s) => s.phase === 'Succeeded').length;
  assert.equal(steps.length, executed, 'a Pod for every step that ran, and no other');
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
  assert.ok(rows.length >= 4);
  for (const row of rows) assert.match(row, /\s(iris-train|iris-predict)\s+Succeeded\s+(\d+)\/\2\s/, 'every run Succeeded with all its steps done');
});
