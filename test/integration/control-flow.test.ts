// Control flow against the real API server, with the agent running as real processes (the
// process kubelet plays each Pod): results passed between steps, `when` conditions, a forEach
// sweep with its fan-in, finally steps after success, failure, timeout and cancel,
// failurePolicy Continue, and bad input refused with a condition that names the step.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun, StepStatus } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import { extractArtifact } from '../../operator/agent/tar.ts';
import { openArtifactStore } from '../../operator/artifacts/open.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import type { OperatorProcess } from '../harness/operator-process.ts';
import { startProcessRig, type ProcessRig } from '../harness/process-rig.ts';

const sh = (script: string) => ['sh', '-c', script];

let rig: ProcessRig;
let cluster: TestCluster;
let namespace: string;
let storeDir: string;
let operator: OperatorProcess;

before(async () => {
  rig = await startProcessRig('flow');
  ({ cluster, namespace, storeDir, operator } = rig);
});

after(() => rig?.stop());

const finished = (name: string) => waitForRun(cluster, namespace, name, { operatorLogs: operator.logs, timeoutMs: 90_000 });
const stepOf = (run: PipelineRun, name: string): StepStatus => {
  const found = run.status?.steps?.find((s) => s.name === name);
  assert.ok(found, `run ${run.metadata.name} has step ${name}: ${JSON.stringify(run.status?.steps?.map((s) => s.name))}`);
  return found;
};
const phases = (run: PipelineRun) => Object.fromEntries((run.status?.steps ?? []).map((s) => [s.name, s.reason ? `${s.phase}/${s.reason}` : s.phase]));
const reasonOf = (run: PipelineRun) => run.status?.conditions?.find((c) => c.type === 'Succeeded')?.reason;

async function start(p: Pipeline, run: Partial<Parameters<typeof pipelineRun>[0]> & { name: string }): Promise<PipelineRun> {
  await cluster.client.create(PIPELINES, namespace, p);
  await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ namespace, pipeline: p.metadata.name, ...run }));
  return finished(run.name);
}

/** The text of a file in an output (`file` empty: the output is that one file). */
async function outputText(uri: string, file = ''): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-flow-out-'));
  try {
    await extractArtifact(await openArtifactStore(`file://${storeDir}`).read(uri), join(dir, 'out'));
    return await readFile(join(dir, 'out', file), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('results and conditions', () => {
  it('passes a result downstream and skips the branch whose when is false (coinflip)', async () => {
    const run = await start(pipeline({ name: 'coinflip', namespace, steps: [
      step('flip', { command: sh('echo heads > /ferry/results/side; echo 3 > /ferry/results/count'), results: [{ name: 'side', type: 'string' }, { name: 'count', type: 'int' }] }),
      step('heads', { dependsOn: ['flip'], when: 'steps.flip.results.side == "heads" && steps.flip.results.count > 2', command: sh('echo "it was $(steps.flip.results.side)" > /ferry/outputs/said'), outputs: [{ name: 'said', type: 'file' }] }),
      step('tails', { dependsOn: ['flip'], when: 'steps.flip.results.side == "tails"', command: sh('exit 1') }),
      step('after-tails', { dependsOn: ['tails'], command: sh('true') }),
    ] }), { name: 'coinflip-1' });
    console.log('coinflip:', JSON.stringify(phases(run)));
    assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
    assert.deepEqual(stepOf(run, 'flip').results, { side: 'heads', count: '3' });
    assert.equal(stepOf(run, 'tails').phase, 'Skipped');
    assert.equal(stepOf(run, 'tails').reason, 'ConditionFalse');
    // A step skipped by its own condition does not block what only depends on it.
    assert.equal(stepOf(run, 'after-tails').phase, 'Succeeded');
    assert.equal(await outputText(stepOf(run, 'heads').outputs![0]!.uri), 'it was heads\n');
  });

  it('fails a step whose declared result is missing or ill-typed, naming it', async () => {
    const run = await start(pipeline({ name: 'bad-result', namespace, steps: [
      step('count', { command: sh('echo many > /ferry/results/n'), results: [{ name: 'n', type: 'int' }, { name: 'missing', type: 'string' }] }),
    ] }), { name: 'bad-result-1' });
    const count = stepOf(run, 'count');
    console.log('bad result:', count.reason, count.message);
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(count.reason, 'InvalidResult');
    assert.match(count.message ?? '', /result "n" \(int\): "many" is not an integer/);
  });

  it('fails a step whose result is over the 4096-byte cap, naming it', async () => {
    const run = await start(pipeline({ name: 'big-result', namespace, steps: [
      step('big', { command: sh('head -c 5000 /dev/zero | tr "\\0" x > /ferry/results/blob'), results: [{ name: 'blob', type: 'string' }] }),
    ] }), { name: 'big-result-1' });
    const big = stepOf(run, 'big');
    console.log('big result:', big.reason, big.message);
    assert.equal(run.status?.phase, 'Failed');
    assert.match(big.message ?? '', /result "blob" is 5000 bytes, more than the limit of 4096/);
  });
});

describe('forEach', () => {
  it('sweeps over a list, one Pod per item within maxParallelism, and a fan-in step reads every item', async () => {
    const run = await start(pipeline({ name: 'sweep', namespace,
      parameters: [{ name: 'cs', type: 'json', default: '[0.1, 1, 10]' }],
      steps: [
        step('train', {
          forEach: { parameter: 'cs', maxParallelism: 2 },
          command: sh('mkdir -p /ferry/outputs/model && echo "c=$(item)" > /ferry/outputs/model/weights && echo "$FERRY_ITEM_INDEX" > /ferry/results/index && awk "BEGIN{print 1/(1+$(item))}" > /ferry/results/accuracy'),
          outputs: [{ name: 'model', type: 'model' }],
          results: [{ name: 'accuracy', type: 'float' }, { name: 'index', type: 'int' }],
        }),
        step('pick', {
          dependsOn: ['train'],
          inputs: [{ name: 'models', from: { step: 'train', output: 'model' } }],
          command: sh('echo \'$(steps.train.results.accuracy)\' > /ferry/results/all; cat /ferry/inputs/models/0/weights /ferry/inputs/models/1/weights /ferry/inputs/models/2/weights > /ferry/outputs/weights'),
          outputs: [{ name: 'weights', type: 'file' }],
          results: [{ name: 'all', type: 'json' }],
        }),
        step('register', { dependsOn: ['pick'], when: 'steps.train.results.accuracy.exists(a, a > 0.9)', command: sh('true') }),
        step('never', { dependsOn: ['pick'], when: 'size(steps.train.results.accuracy) > 3', command: sh('true') }),
      ] }), { name: 'sweep-1' });
    console.log('sweep:', JSON.stringify(phases(run)), 'items', JSON.stringify(stepOf(run, 'train').items), 'status bytes', JSON.stringify(run.status).length);
    assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
    const train = stepOf(run, 'train');
    assert.deepEqual(train.items, { total: 3, pending: 0, running: 0, succeeded: 3, failed: 0 });
    assert.ok(train.collection?.digest.startsWith('sha256:'));
    assert.equal(train.outputs, undefined, 'a forEach step keeps its items in its collection, not in status');
    assert.deepEqual(JSON.parse(stepOf(run, 'pick').results!.all!), [1 / 1.1, 0.5, 1 / 11].map((x) => Number(x.toPrecision(6))));
    assert.equal(await outputText(stepOf(run, 'pick').outputs![0]!.uri), 'c=0.1\nc=1\nc=10\n');
    assert.ok(['Succeeded', 'Cached'].includes(stepOf(run, 'register').phase), stepOf(run, 'register').phase);
    assert.equal(stepOf(run, 'never').reason, 'ConditionFalse');
    // Three item Pods, named by index, never more than two at once (maxParallelism).
    const { items: pods } = await cluster.client.list<Pod>(PODS, namespace, 'ferry.dev/run=sweep-1,ferry.dev/step=train');
    assert.deepEqual(pods.map((p) => p.metadata.name).sort(), ['sweep-1-train-0-1', 'sweep-1-train-1-1', 'sweep-1-train-2-1']);
    const spans = pods.map((p) => ({ start: Date.parse(p.status?.startTime ?? ''), end: Math.max(...(p.status?.containerStatuses ?? []).map((c) => Date.parse(c.state?.terminated?.finishedAt ?? '')))}));
    const peak = Math.max(...spans.map((a) => spans.filter((b) => b.start <= a.start && b.end > a.start).length));
    console.log('sweep: peak concurrent items', peak);
    assert.ok(peak <= 2, `at most 2 items at once, saw ${peak}`);
  });

  it('fails a forEach over a result that is not a list, before any item Pod', async () => {
    const run = await start(pipeline({ name: 'not-a-list', namespace, steps: [
      step('make', { command: sh('echo \'{"a": 1}\' > /ferry/results/items'), results: [{ name: 'items', type: 'json' }] }),
      step('each', { dependsOn: ['make'], forEach: { result: { step: 'make', name: 'items' } }, command: sh('true') }),
    ] }), { name: 'not-a-list-1' });
    const each = stepOf(run, 'each');
    console.log('not a list:', each.reason, each.message);
    assert.equal(each.reason, 'InvalidForEach');
    assert.match(each.message ?? '', /result "items" of step "make" is not a JSON list/);
    const { items: pods } = await cluster.client.list<Pod>(PODS, namespace, 'ferry.dev/run=not-a-list-1,ferry.dev/step=each');
    assert.equal(pods.length, 0);
  });
});

describe('finally and failurePolicy', () => {
  const withSummary = (name: string, main: ReturnType<typeof step>[], extra: Partial<Pipeline['spec']> = {}) => pipeline({ name, namespace, ...extra, steps: main, finally: [
    step('summary', { command: sh('echo "$(run.status) [$(run.failedSteps)] $FERRY_RUN_STATUS" > /ferry/outputs/summary'), outputs: [{ name: 'summary', type: 'file' }] }),
  ] });

  it('runs finally after a failure, and the run stays Failed', async () => {
    const run = await start(withSummary('fin-fail', [step('boom', { command: sh('exit 3') })]), { name: 'fin-fail-1' });
    console.log('finally after failure:', JSON.stringify(phases(run)), reasonOf(run));
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(reasonOf(run), 'Failed');
    assert.equal(await outputText(stepOf(run, 'summary').outputs![0]!.uri), 'Failed [boom] Failed\n');
  });

  it('runs finally after the run timed out', async () => {
    const run = await start(withSummary('fin-timeout', [step('slow', { command: sh('sleep 4') })], { timeoutSeconds: 1 }), { name: 'fin-timeout-1' });
    console.log('finally after timeout:', JSON.stringify(phases(run)), reasonOf(run));
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(reasonOf(run), 'TimedOut');
    assert.equal(stepOf(run, 'slow').phase, 'Cancelled');
    assert.equal(await outputText(stepOf(run, 'summary').outputs![0]!.uri), 'Failed [] Failed\n');
  });

  it('runs finally after a cancel', async () => {
    await cluster.client.create(PIPELINES, namespace, withSummary('fin-cancel', [step('wait', { command: sh('sleep 4') })]));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'fin-cancel-1', namespace, pipeline: 'fin-cancel' }));
    await eventually('the step to run', async () => {
      const run = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, 'fin-cancel-1');
      return run.status?.steps?.find((s) => s.name === 'wait')?.phase === 'Running' ? true : undefined;
    });
    await cluster.client.mergePatch(PIPELINE_RUNS, namespace, 'fin-cancel-1', { spec: { cancel: true } });
    const run = await finished('fin-cancel-1');
    console.log('finally after cancel:', JSON.stringify(phases(run)), reasonOf(run));
    assert.equal(run.status?.phase, 'Cancelled');
    assert.equal(await outputText(stepOf(run, 'summary').outputs![0]!.uri), 'Cancelled [] Cancelled\n');
  });

  it('lets independent branches finish under failurePolicy Continue', async () => {
    const run = await start(pipeline({ name: 'cont', namespace, failurePolicy: 'Continue', steps: [
      step('a', { command: sh('exit 1') }),
      step('b', { command: sh('sleep 1') }),
      step('c', { dependsOn: ['a'], command: sh('true') }),
      step('d', { dependsOn: ['b'], command: sh('echo d-of-continue') }),
    ] }), { name: 'cont-1' });
    console.log('continue:', JSON.stringify(phases(run)), reasonOf(run));
    assert.equal(run.status?.phase, 'Failed');
    assert.deepEqual(phases(run), { a: 'Failed/Failed', b: 'Succeeded', c: 'Skipped/UpstreamFailed', d: 'Succeeded' });
  });
});

describe('bad control flow is refused with a condition naming the step, and no Pod', () => {
  const refused = async (name: string, steps: ReturnType<typeof step>[], reason: string, message: RegExp) => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name, namespace, parameters: [{ name: 'n', type: 'int', default: 1 }], steps }));
    const ready = await eventually(`pipeline ${name} to be validated`, async () => {
      const p = await cluster.client.get<Pipeline>(PIPELINES, namespace, name);
      return p.status?.conditions?.find((c) => c.type === 'Ready');
    });
    console.log(`${name}: Ready=${ready.status} ${ready.reason}: ${ready.message}`);
    assert.equal(ready.status, 'False');
    assert.equal(ready.reason, reason);
    assert.match(ready.message, message);
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: `${name}-1`, namespace, pipeline: name }));
    const run = await finished(`${name}-1`);
    assert.equal(reasonOf(run), 'InvalidPipeline');
    const { items } = await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${name}-1`);
    assert.equal(items.length, 0);
  };

  it('a condition that does not compile', () => refused('cel-syntax', [step('a', { when: 'params.n >' })], 'InvalidCondition', /step "a": when "params.n >": syntax error/));
  it('a condition that does not type-check', () => refused('cel-type', [step('a', { when: 'params.n == "one"' })], 'InvalidCondition', /step "a": .*(no such overload|type)/));
  it('a result of a step that is not upstream', () => refused('not-upstream', [
    step('a', { results: [{ name: 'x', type: 'string' }] }),
    step('b', { args: ['$(steps.a.results.x)'] }),
  ], 'InvalidResultReference', /step "b" uses \$\(steps\.a\.results\.x\), but step "a" is not upstream of it/));
});
