// `npm run demo`: Ferry end to end in real Pods. Starts (or reuses) the local single-node
// cluster (test/cluster), builds and pushes the Ferry and example images to its registry,
// starts PostgreSQL, `helm install`s Ferry, then runs the iris example: three training runs,
// each a sweep over the regularisation c (one Pod per value, the best picked, registered only
// when good enough, the better model promoted to Production, a finally summary), then batch
// inference on the Production model, with live progress, and a summary of what was made with
// each sweep as a table; last, the endpoint serving the Production model answers a request, and
// another version promoted by hand takes over. Running it again reuses what the step cache can: every step but the
// sweep's items and the pick that reads them (docs/control-flow.md), and registers nothing new.
//
//   npm run demo                                  the local cluster (Linux, root)
//   npm run demo -- --context NAME --registry HOST[:PORT] [--insecure-registry] [--database-url DSN]
//                                                 a cluster of yours (kind, minikube, cloud)
//   npm run demo -- --down [--context NAME]       remove it all
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ModelVersion } from '../operator/api/v1alpha1/model-version.ts';
import type { PipelineRun } from '../operator/api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../operator/kube/pod.ts';
import { extractArtifact } from '../operator/agent/tar.ts';
import { KubeClient, loadKubeConfig } from '../operator/kube/client.ts';
import { MODEL_VERSIONS, PODS } from '../operator/kube/resources.ts';
import { ANNOTATION_DEFAULT_CONTAINER } from '../operator/api/v1alpha1/labels.ts';
import { run as runProcess } from '../test/harness/api-server.ts';
import { ensureBinaries } from '../test/harness/binaries.ts';
import { attachCluster } from '../test/cluster/cluster.ts';
import { ensureExampleImage } from '../test/cluster/example-image.ts';
import { defaultWorkDir, layoutOf } from '../test/cluster/layout.ts';
import { applyPipelines, loadExample, startRun } from './demo/examples.ts';
import { setUpLocal } from './demo/local.ts';
import { buildAndPushFerryImage } from './demo/ferry-image.ts';
import { installFerry, kubectlOk, uninstallFerry, type Target } from './demo/install.ts';
import { RunProgress } from './demo/progress.ts';
import { ask, setStage, waitForLive, type Answer } from './demo/endpoint.ts';

const { values } = parseArgs({
  options: {
    down: { type: 'boolean', default: false },
    context: { type: 'string' },
    kubeconfig: { type: 'string' },
    registry: { type: 'string' },
    'insecure-registry': { type: 'boolean', default: false },
    'database-url': { type: 'string' },
    namespace: { type: 'string', default: 'ml-team' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
/** Where the pipelines run: a tenant namespace of its own, as a platform team gives each team. */
const namespace = values.namespace;
/** Where Ferry is installed (operator, artifact server, PostgreSQL). */
const installNamespace = 'ferry-system';
const release = 'ferry';
const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(0)} s`;
const say = (line: string): void => console.log(`[demo] ${line}`);
const runTimeoutMs = 15 * 60_000;

try {
  if (values.help) {
    console.log((await readFile(import.meta.filename, 'utf8')).split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
  } else if (values.down) {
    await down();
  } else {
    await up();
  }
} catch (err) {
  console.error(`[demo] failed after ${elapsed()}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}

async function up(): Promise<void> {
  const external = values.context !== undefined;
  if (external && values.registry === undefined) throw new Error('--context needs --registry HOST[:PORT]: a registry this machine can push to and the cluster can pull from');

  let target: Target;
  let registry: string;
  let hostStore: string | undefined;
  const detail = (line: string): void => say(`    ${line}`);
  if (!external) {
    const local = await setUpLocal({
      namespace: installNamespace, release, log: detail,
      phase: (what, text) => {
        if (text) detail(`${text} (${elapsed()})`);
        if (what === 'cluster') say('1/6 local cluster (etcd, kube-apiserver, controller-manager, scheduler, kubelet, containerd, registry) ...');
        if (what === 'images') say('2/6 images (Ferry, scikit-learn example) and PostgreSQL ...');
        if (what === 'install') say('3/6 helm upgrade --install ferry charts/ferry ...');
      },
    });
    target = local.cluster;
    registry = local.cluster.registry;
    hostStore = local.layout.artifacts;
  } else {
    say(`1/6 cluster: context ${values.context}`);
    target = await externalTarget();
    registry = values.registry!;
    say('2/6 images (Ferry, scikit-learn example) ...');
    const [ferryImage, exampleImage] = await Promise.all([buildAndPushFerryImage(registry, detail), ensureExampleImage(registry, detail)]);
    detail(`example image ${exampleImage}`);
    say('3/6 helm upgrade --install ferry charts/ferry ...');
    await installFerry({
      target, namespace: installNamespace, release, image: ferryImage, insecureRegistries: values['insecure-registry'] ? [registry] : [],
      ...(values['database-url'] !== undefined ? { databaseUrl: values['database-url'] } : {}), log: detail,
    });
  }

  const client = new KubeClient(kubeConfigOf(target), { qps: 20, burst: 40, fieldManager: 'ferry-demo' });
  const example = await loadExample(registry);
  say(`    pipelines run in namespace ${namespace}; Ferry is installed in ${installNamespace}`);
  await kubectlOk(target, ['create', 'namespace', namespace]).catch(() => undefined); // it may exist from an earlier demo
  await applyPipelines(target, namespace, example.pipelines);
  const progress = new RunProgress(client, namespace, (line) => say(`    ${line}`));
  await progress.start();
  try {
    say(`4/6 training: ${example.trainingRuns.length} runs of ${[...new Set(example.trainingRuns.map((r) => r.spec.pipelineRef?.name))].join(', ')} with different parameters`);
    const trainingNames: string[] = [];
    for (const template of example.trainingRuns) {
      const name = await startRun(client, namespace, template);
      trainingNames.push(name);
      say(`    ${name}: ${(template.spec.parameters ?? []).map((p) => `${p.name}=${String(p.value)}`).join(' ')}`);
      progress.follow(name);
    }
    const training = await progress.finished(trainingNames, runTimeoutMs);
    assertSucceeded(training);
    const versions = await registeredVersions(client, training);

    say('5/6 batch inference on the Production model ...');
    const inferenceNames: string[] = [];
    for (const template of example.inferenceRuns) {
      const name = await startRun(client, namespace, template);
      inferenceNames.push(name);
      progress.follow(name);
    }
    const inference = await progress.finished(inferenceNames, runTimeoutMs);
    assertSucceeded(inference);
    await summary(client, [...training, ...inference], versions, hostStore);
    await serving(target, client);
  } finally {
    await progress.stop();
  }
  say(`done in ${elapsed()}. Look around: export KUBECONFIG=${target.kubeconfigPath}; kubectl get pipelines,pipelineruns,modelversions -n ${namespace}`);
  say(`remove it all: npm run demo -- --down${external ? ` --context ${values.context}` : ''}`);
}

async function down(): Promise<void> {
  if (values.context !== undefined) {
    const target = await externalTarget();
    await kubectlOk(target, ['delete', 'namespace', namespace, '--ignore-not-found', '--wait=true']);
    await uninstallFerry(target, installNamespace, release);
    say(`deleted namespace ${namespace}, uninstalled ${release} and deleted namespace ${installNamespace} (${elapsed()})`);
    return;
  }
  const cluster = await attachCluster({ log: (line) => say(`    ${line}`) });
  const report = await (cluster?.stop() ?? import('../test/cluster/cleanup.ts').then(({ teardown }) => teardown(layoutOf(defaultWorkDir()))));
  say(`local cluster stopped and cleaned up: ${report.removed.length} things removed${report.failed.length > 0 ? `, ${report.failed.length} failed:\n${report.failed.join('\n')}` : ''} (${elapsed()})`);
  if (report.failed.length > 0) process.exitCode = 1;
}

async function externalTarget(): Promise<Target> {
  const kubectl = join(await ensureBinaries(['kubectl']), 'kubectl');
  const kubeconfigPath = values.kubeconfig ?? process.env.KUBECONFIG ?? join(process.env.HOME ?? '/root', '.kube', 'config');
  const context = values.context!;
  return { kubeconfigPath, context, kubectl: (args, input) => runProcess(kubectl, ['--kubeconfig', kubeconfigPath, '--context', context, ...args], input) };
}

function kubeConfigOf(target: Target) {
  const config = loadKubeConfig(target.kubeconfigPath);
  if (target.context) config.setCurrentContext(target.context);
  return config;
}

function assertSucceeded(runs: PipelineRun[]): void {
  const failed = runs.filter((r) => r.status?.phase !== 'Succeeded');
  if (failed.length > 0) {
    throw new Error(failed.map((r) => `run ${r.metadata.name} ${r.status?.phase}: ${r.status?.conditions?.find((c) => c.type === 'Succeeded')?.message ?? ''}`).join('; '));
  }
}

/** The ModelVersions the runs registered, once the operator has created them and decided their stage. */
async function registeredVersions(client: KubeClient, runs: PipelineRun[]): Promise<ModelVersion[]> {
  const names = runs.flatMap((r) => r.status?.steps?.flatMap((s) => s.models ?? []) ?? []).map((m) => `${m.name}-v${m.version}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const all = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items;
    const mine = all.filter((v) => names.includes(v.metadata.name));
    if (mine.length === names.length && mine.every((v) => v.status?.stage !== undefined)) return mine;
    if (Date.now() > deadline) throw new Error(`ModelVersions ${names.join(', ')} not all registered after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function summary(client: KubeClient, runs: PipelineRun[], registered: ModelVersion[], hostStore: string | undefined): Promise<void> {
  const line = '─'.repeat(100);
  console.log(`\n${line}\nFerry demo summary (${elapsed()})\n${line}`);
  console.log('Runs:');
  for (const run of runs) {
    const steps = run.status?.steps ?? [];
    const cached = steps.filter((s) => s.phase === 'Cached').length;
    console.log(`  ${run.metadata.name.padEnd(26)} ${run.status?.phase} ${run.status?.progress ?? ''}${cached > 0 ? ` (${cached} from cache)` : ''}  ${(run.status?.parameters ?? []).map((p) => `${p.name}=${String(p.value)}`).join(' ')}`);
    console.log(`    frozen configuration ${run.status?.configuration?.uri ?? '-'}`);
    console.log(`                         ${run.status?.configuration?.digest ?? '-'}`);
  }
  const versions = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.sort((a, b) => a.spec.version - b.spec.version);
  const sweeps = runs.filter((r) => sweepOf(r) !== undefined);
  if (sweeps.length > 0) console.log('Sweeps (train: one Pod per c, 5-fold cross-validated accuracy; pick: the best; register: held-out accuracy, when the best reaches min-accuracy):');
  for (const run of sweeps) {
    console.log(`  ${run.metadata.name}  ${(run.status?.parameters ?? []).filter((p) => p.name === 'cs' || p.name === 'min-accuracy').map((p) => `${p.name}=${String(p.value)}`).join(' ')}`);
    console.log(indent(sweepTable(run, versions).join('\n'), 4));
    const summaryStep = run.status?.steps?.find((s) => s.name === 'summary');
    const summaryOutput = summaryStep?.outputs?.find((o) => o.name === 'summary');
    if (summaryStep) console.log(`    finally summary: ${summaryStep.phase}${summaryOutput ? (hostStore === undefined ? ` ${summaryOutput.uri}` : `, tar -xOf ${hostPathOf(hostStore, summaryOutput.uri)}`) : ''}`);
  }
  console.log('ModelVersions (this demo run registered: ' + (registered.map((v) => v.metadata.name).join(', ') || 'none') + '):');
  for (const v of versions) {
    const metrics = Object.entries(v.spec.metrics ?? {}).map(([k, n]) => `${k}=${Number(n.toFixed(4))}`).join(' ');
    console.log(`  ${v.metadata.name.padEnd(10)} ${(v.status?.stage ?? v.spec.stage ?? 'None').padEnd(10)} ${metrics.padEnd(36)} run ${v.spec.source?.run ?? '-'}  ${v.spec.artifact.digest.slice(0, 19)}…`);
    const reason = v.status?.history?.at(-1)?.reason;
    if (reason) console.log(`  ${''.padEnd(10)} ${reason}`);
  }
  const inference = runs.filter((r) => r.status?.steps?.some((s) => s.outputs?.some((o) => o.name === 'report')));
  for (const run of inference) {
    const report = run.status!.steps!.flatMap((s) => s.outputs ?? []).find((o) => o.name === 'report')!;
    console.log(`Batch report of ${run.metadata.name}: ${report.uri} (${report.digest})`);
    if (hostStore !== undefined) {
      const hostPath = hostPathOf(hostStore, report.uri);
      console.log(`  on this machine: ${hostPath} (a tar holding one file; tar -xOf ${hostPath})`);
      console.log(indent(await readArtifact(hostPath)));
    }
  }
  console.log('Pods (step and endpoint Pods run images by digest):');
  console.log(indent(await podTable(client)));
}

/**
 * Every Pod with the image of the container that does its work: the one its default-container
 * annotation names (a step's container, an endpoint's server), else its first container.
 */
async function podTable(client: KubeClient): Promise<string> {
  const pods = (await client.list<Pod>(PODS)).items;
  const rows = pods.map((pod) => {
    const named = pod.metadata.annotations?.[ANNOTATION_DEFAULT_CONTAINER];
    const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    const working = all.find((c) => c.name === named) ?? pod.spec?.containers[0];
    return [pod.metadata.namespace ?? '', pod.metadata.name, pod.status?.phase ?? '', working?.image ?? ''];
  });
  const table = [['NAMESPACE', 'NAME', 'STATUS', 'IMAGE'], ...rows];
  const widths = [0, 1, 2].map((i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join('   ')).join('\n');
}

/** The endpoint of the inference Pipeline: its answer, then another version promoted by hand and the switch. */
async function serving(target: Target, client: KubeClient): Promise<void> {
  say('6/6 serving: the iris-predict endpoint follows the Production model ...');
  const flower = { sepal_length_cm: 6.3, sepal_width_cm: 2.9, petal_length_cm: 5.6, petal_width_cm: 1.8 };
  const show = (answer: Answer) => {
    const [first] = answer.predictions;
    const probabilities = Object.entries(first?.probabilities ?? {}).map(([k, p]) => `${k} ${p.toFixed(3)}`).join(', ');
    return `${first?.species} (${probabilities}) from ${answer.model.name}-v${answer.model.version} ${answer.model.digest.slice(0, 19)}…`;
  };
  const before = await waitForLive(client, namespace, 'iris-predict', undefined, 5 * 60_000);
  say(`    POST ${before.url}/predict ${JSON.stringify({ instances: [flower] })}`);
  say(`    → ${show(await ask(client, namespace, before, [flower]))}`);
  const versions = (await client.list<ModelVersion>(MODEL_VERSIONS, namespace)).items.filter((v) => v.spec.modelName === 'iris' && v.spec.source?.run);
  const other = versions.filter((v) => v.metadata.name !== before.live!.modelVersion).sort((a, b) => b.spec.version - a.spec.version)[0];
  if (!other) return;
  say(`    promoting ${other.metadata.name} to Production by hand; the endpoint rolls to it (readiness-gated, no request lost) ...`);
  await setStage(target, namespace, other.metadata.name, 'Production');
  const after = await waitForLive(client, namespace, 'iris-predict', other.metadata.name, 5 * 60_000);
  say(`    ${before.live!.modelVersion} → ${after.live!.modelVersion} at ${after.live!.since}`);
  say(`    → ${show(await ask(client, namespace, after, [flower]))}`);
  say(`    which version answered when: kubectl -n ${namespace} get pipeline iris-predict -o jsonpath='{.status.serving.history}'`);
}

/** The host file behind a URI of the chart's file:// store (the local cluster's hostPath volume). */
function hostPathOf(hostStore: string, uri: string): string {
  return join(hostStore, uri.replace(/^file:\/\/\/var\/lib\/ferry\/artifacts\//, ''));
}

interface SweepEntry { index: number; c: number; accuracy: number }

/** A sweep's table as the fan-in step's results hold it (`sweep`, `best_index`): read from the run's status, not the store. */
function sweepOf(run: PipelineRun): { entries: SweepEntry[]; best: number; step: string } | undefined {
  const pick = run.status?.steps?.find((s) => s.results?.sweep !== undefined && s.results.best_index !== undefined);
  if (!pick) return undefined;
  try {
    return { entries: JSON.parse(pick.results!.sweep!) as SweepEntry[], best: Number(pick.results!.best_index), step: pick.name };
  } catch {
    return undefined;
  }
}

function sweepTable(run: PipelineRun, versions: ModelVersion[]): string[] {
  const sweep = sweepOf(run)!;
  const lines = ['item  c          cv accuracy'];
  for (const e of sweep.entries) {
    lines.push(`${String(e.index).padEnd(4)}  ${String(e.c).padEnd(9)}  ${e.accuracy.toFixed(4)}${e.index === sweep.best ? `       ← picked (${sweep.step})` : ''}`);
  }
  // The step that registered a model, or the example's register step when it did not (skipped, cached).
  const register = run.status?.steps?.find((s) => (s.models?.length ?? 0) > 0) ?? run.status?.steps?.find((s) => s.name === 'register');
  if (register) {
    const registered = (register.models ?? []).map((m) => {
      const v = versions.find((x) => x.spec.modelName === m.name && x.spec.version === m.version);
      return `${m.name}-v${m.version} (${v?.status?.stage ?? 'None'}, held-out accuracy ${v?.spec.metrics?.accuracy?.toFixed(4) ?? '?'})`;
    });
    const what = register.phase === 'Succeeded' ? `registered ${registered.join(', ') || 'nothing'}`
      : register.phase === 'Cached' ? `Cached from ${register.cachedFrom ?? 'an earlier run'}, which registered the model: no new version`
      : `${register.phase}${register.message ? `: ${register.message}` : ''}`;
    lines.push(`${register.name}: ${what}`);
  }
  return lines;
}

async function readArtifact(hostPath: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-demo-report-'));
  try {
    const file = join(dir, 'report'); // a one-file artifact's root is the file itself
    await extractArtifact(createReadStream(hostPath), file);
    return (await readFile(file, 'utf8')).trimEnd();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function indent(text: string, spaces = 4): string {
  return text.trimEnd().split('\n').map((l) => `${' '.repeat(spaces)}${l}`).join('\n');
}
