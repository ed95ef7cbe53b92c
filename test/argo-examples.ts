// Argo Workflows' classic examples as Ferry Pipelines (examples/argo/): loads them, and says for
// each run the tests start what it must end as. Shared by the integration test (the harness's API
// server, steps as local processes) and the end-to-end test (the local cluster, real Pods), which
// differ only in how they reach Pods and the artifact store.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { API_VERSION } from '../operator/api/v1alpha1/common.ts';
import type { PipelineRun, StepStatus } from '../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../operator/api/v1alpha1/pipeline.ts';
import { parseCollection } from '../operator/controllers/pipeline-run/collection.ts';
import type { Pod } from '../operator/kube/pod.ts';

export const ARGO_EXAMPLES_DIR = join(import.meta.dirname, '..', 'examples', 'argo');

export interface ArgoExample {
  /** The file's name without `.yaml`, which is also its Pipeline's name. */
  name: string;
  pipeline: Pipeline;
  /** The file's PipelineRun, a template (generateName). */
  run: PipelineRun;
}

/** Every example of examples/argo, each step's image replaced by `image` (what the cluster can run). */
export async function loadArgoExamples(image: string): Promise<ArgoExample[]> {
  const files = (await readdir(ARGO_EXAMPLES_DIR)).filter((f) => f.endsWith('.yaml')).sort();
  const examples: ArgoExample[] = [];
  for (const file of files) {
    const documents = (loadAll(await readFile(join(ARGO_EXAMPLES_DIR, file), 'utf8')) as Array<Pipeline | PipelineRun | null>).filter((d) => d != null);
    const pipelines = documents.filter((d): d is Pipeline => d.kind === 'Pipeline');
    const runs = documents.filter((d): d is PipelineRun => d.kind === 'PipelineRun');
    const name = file.replace(/\.yaml$/, '');
    assert.equal(pipelines.length, 1, `${file} holds one Pipeline`);
    assert.equal(runs.length, 1, `${file} holds one PipelineRun`);
    const [pipeline, run] = [pipelines[0]!, runs[0]!];
    assert.equal(pipeline.metadata.name, name, `${file}: the Pipeline is named after its file`);
    assert.equal(run.spec.pipelineRef?.name, name, `${file}: the PipelineRun runs its Pipeline`);
    const withImage = (steps: Pipeline['spec']['steps'] | undefined) => steps?.map((s) => ({ ...s, image }));
    const spec = { ...pipeline.spec, steps: withImage(pipeline.spec.steps)!, ...(pipeline.spec.finally ? { finally: withImage(pipeline.spec.finally) } : {}) };
    examples.push({ name, pipeline: { ...pipeline, spec }, run });
  }
  return examples;
}

/** What a check can look at once its run has finished. */
export interface RunFacts {
  run: PipelineRun;
  /** The run's Pods (label ferry.dev/run). */
  pods: Pod[];
  /** The bytes of an object of the artifact store, by URI. */
  readObject(uri: string): Promise<Buffer>;
}

export interface ArgoCase {
  /** The run's name (and the test's). */
  run: string;
  /** The example it runs. */
  example: string;
  parameters?: Record<string, string | number>;
  /** Asserts how the run ended; returns a one-line description of it. */
  check(facts: RunFacts): Promise<string>;
  /** For a test with real Pods: what a step's log (`kubectl logs <pod>`) says, when it ran in a Pod. */
  logs?: Array<{ pod: string; step: string; includes: string }>;
}

export type Tier = 'integration' | 'e2e';

/** The run of a case: the example's PipelineRun under the case's name, with its parameters. */
export function runOf(example: ArgoExample, c: ArgoCase, namespace: string): PipelineRun {
  const parameters = Object.entries(c.parameters ?? {}).map(([name, value]) => ({ name, value }));
  return {
    apiVersion: API_VERSION,
    kind: 'PipelineRun',
    metadata: { name: c.run, namespace, ...(example.run.metadata.labels ? { labels: example.run.metadata.labels } : {}) },
    spec: { ...example.run.spec, ...(parameters.length > 0 ? { parameters } : {}) },
  };
}

export function stepOf(run: PipelineRun, name: string): StepStatus {
  const found = run.status?.steps?.find((s) => s.name === name);
  assert.ok(found, `run ${run.metadata.name} has step ${name}: ${JSON.stringify(run.status?.steps?.map((s) => s.name))}`);
  return found;
}

/** Step → `phase` or `phase/reason`. */
export const phases = (run: PipelineRun): Record<string, string> =>
  Object.fromEntries((run.status?.steps ?? []).map((s) => [s.name, s.reason ? `${s.phase}/${s.reason}` : s.phase]));

const reasonOf = (run: PipelineRun) => run.status?.conditions?.find((c) => c.type === 'Succeeded')?.reason;
/** A step that did its work: in a Pod, or from the step cache (an identical step of another run). */
const done = (step: StepStatus) => step.phase === 'Succeeded' || step.phase === 'Cached';

function assertPhase(run: PipelineRun, phase: string, reason?: string): void {
  const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
  assert.equal(run.status?.phase, phase, `${run.metadata.name}: ${JSON.stringify(phases(run))} ${condition?.reason}: ${condition?.message}`);
  if (reason) assert.equal(reasonOf(run), reason, `${run.metadata.name}: ${condition?.message}`);
}

function assertSkipped(run: PipelineRun, name: string): void {
  const step = stepOf(run, name);
  assert.deepEqual([step.phase, step.reason], ['Skipped', 'ConditionFalse'], `${run.metadata.name}/${name}: ${step.message}`);
}

function assertDone(run: PipelineRun, name: string): void {
  const step = stepOf(run, name);
  assert.ok(done(step), `${run.metadata.name}/${name} is ${step.phase}/${step.reason}: ${step.message}`);
}

/** The JSON list of one result over a forEach step's items, read from its collection in the store. */
async function collectedResults(facts: RunFacts, step: string, result: string): Promise<unknown[]> {
  const collection = stepOf(facts.run, step).collection;
  assert.ok(collection, `${facts.run.metadata.name}/${step} has a collection`);
  const parsed = parseCollection(await facts.readObject(collection.uri), collection.digest);
  return parsed.items.map((item) => item.results?.[result]);
}

const ms = (time: string | undefined) => Date.parse(time ?? '');

/** The most Pods of a step that were alive at once, from their start to their last container's end. */
export function peakConcurrency(pods: Pod[], step: string): number {
  const spans = pods.filter((p) => p.metadata.labels?.['ferry.dev/step'] === step).map((p) => {
    const containers = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])];
    return { start: ms(p.status?.startTime), end: Math.max(...containers.map((c) => ms(c.state?.terminated?.finishedAt))) };
  });
  assert.ok(spans.every((s) => Number.isFinite(s.start) && Number.isFinite(s.end)), `every Pod of ${step} has a start and an end`);
  return Math.max(0, ...spans.map((a) => spans.filter((b) => b.start <= a.start && b.end > a.start).length));
}

const podNames = (facts: RunFacts, step: string) =>
  facts.pods.filter((p) => p.metadata.labels?.['ferry.dev/step'] === step).map((p) => p.metadata.name).sort();

function coinflip(run: string, coin: 'heads' | 'tails' | ''): ArgoCase {
  return {
    run,
    example: 'coinflip',
    ...(coin ? { parameters: { coin } } : {}),
    async check({ run: r }) {
      assertPhase(r, 'Succeeded');
      const side = stepOf(r, 'flip-coin').results?.result;
      if (coin) assert.equal(side, coin);
      else assert.ok(side === 'heads' || side === 'tails', `flip-coin said ${side}`);
      const other = side === 'heads' ? 'tails' : 'heads';
      assertDone(r, side!);
      assertSkipped(r, other);
      return `${r.metadata.name}: ${r.status?.phase}, flipped ${side}${coin ? '' : ' (at random)'}, ${other} ${phases(r)[other]}`;
    },
    ...(coin ? { logs: [{ pod: `${run}-${coin}-1`, step: coin, includes: `it was ${coin}` }] } : {}),
  };
}

/**
 * The runs the tests start, concurrently, and how each must end. `tier` changes one thing: the
 * harness's process kubelet leaves a deleted Pod's processes running until they end, so there
 * the step of timeouts-step sleeps 15 s, not the day a real kubelet stops after 10 s.
 */
export function argoCases(tier: Tier): ArgoCase[] {
  return [
    {
      run: 'dag-diamond-1',
      example: 'dag-diamond',
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        assert.deepEqual(phases(run), { a: 'Succeeded', b: 'Succeeded', c: 'Succeeded', d: 'Succeeded' });
        const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => stepOf(run, n)) as [StepStatus, StepStatus, StepStatus, StepStatus];
        assert.ok(ms(b.startedAt) >= ms(a.finishedAt) && ms(c.startedAt) >= ms(a.finishedAt), 'b and c start after a');
        assert.ok(ms(d.startedAt) >= Math.max(ms(b.finishedAt), ms(c.finishedAt)), 'd starts after b and c');
        assert.deepEqual(facts.pods.map((p) => p.metadata.name).sort(), ['a', 'b', 'c', 'd'].map((n) => `${run.metadata.name}-${n}-1`));
        return `${run.metadata.name}: ${run.status?.phase} ${run.status?.progress}, a → (b, c) → d in order`;
      },
      logs: [{ pod: 'dag-diamond-1-d-1', step: 'd', includes: 'D' }],
    },
    {
      run: 'retry-backoff-1',
      example: 'retry-backoff',
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        const step = stepOf(run, 'retry-backoff');
        assert.equal(step.phase, 'Succeeded');
        assert.equal(step.attempts, 3);
        assert.equal(step.results?.attempt, '3');
        const pods = podNames(facts, 'retry-backoff');
        assert.deepEqual(pods, [1, 2, 3].map((n) => `${run.metadata.name}-retry-backoff-${n}`));
        // Backoff 1 s then 2 s: attempt 3 began at least 3 s after attempt 1 (creation times are whole seconds).
        const created = (n: number) => ms(facts.pods.find((p) => p.metadata.name.endsWith(`-${n}`))?.metadata.creationTimestamp);
        const gap = created(3) - created(1);
        assert.ok(gap >= 2_000, `attempt 3 was created ${gap} ms after attempt 1`);
        return `${run.metadata.name}: ${run.status?.phase} on attempt ${step.attempts} (attempts 1 and 2 failed, ${gap / 1000} s between attempts 1 and 3)`;
      },
      logs: [{ pod: 'retry-backoff-1-retry-backoff-3', step: 'retry-backoff', includes: 'attempt 3' }],
    },
    coinflip('coinflip-heads', 'heads'),
    coinflip('coinflip-tails', 'tails'),
    coinflip('coinflip-random', ''),
    {
      run: 'loops-1',
      example: 'loops',
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        const step = stepOf(run, 'print-message-loop');
        assert.deepEqual(step.items, { total: 2, pending: 0, running: 0, succeeded: 2, failed: 0 });
        const messages = await collectedResults(facts, 'print-message-loop', 'message');
        assert.deepEqual(messages, ['hello world', 'goodbye world']);
        assert.deepEqual(podNames(facts, 'print-message-loop'), [0, 1].map((i) => `${run.metadata.name}-print-message-loop-${i}-1`));
        return `${run.metadata.name}: ${run.status?.phase}, items 2/2, messages ${JSON.stringify(messages)}`;
      },
      logs: [{ pod: 'loops-1-print-message-loop-1-1', step: 'print-message-loop', includes: 'goodbye world' }],
    },
    {
      run: 'loops-param-argument-1',
      example: 'loops-param-argument',
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        assert.deepEqual(stepOf(run, 'test-linux').items, { total: 4, pending: 0, running: 0, succeeded: 4, failed: 0 });
        const os = await collectedResults(facts, 'test-linux', 'os');
        assert.deepEqual(os, ['debian:9.1', 'debian:8.9', 'alpine:3.6', 'ubuntu:17.10']);
        return `${run.metadata.name}: ${run.status?.phase}, items 4/4, ${JSON.stringify(os)}`;
      },
      logs: [{ pod: 'loops-param-argument-1-test-linux-2-1', step: 'test-linux', includes: 'os-alpine-3.6' }],
    },
    {
      run: 'loops-param-result-1',
      example: 'loops-param-result',
      // Three short sleeps instead of Argo's eleven of 20 to 30 s.
      parameters: { first: 1, last: 3 },
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        assert.equal(stepOf(run, 'generate').results?.numbers, '[1,2,3]');
        assert.deepEqual(stepOf(run, 'sleep').items, { total: 3, pending: 0, running: 0, succeeded: 3, failed: 0 });
        const slept = await collectedResults(facts, 'sleep', 'slept');
        assert.deepEqual(slept, ['1', '2', '3']);
        return `${run.metadata.name}: ${run.status?.phase}, generate made [1,2,3], sleep items 3/3 slept ${JSON.stringify(slept)}`;
      },
      logs: [{ pod: 'loops-param-result-1-sleep-2-1', step: 'sleep', includes: 'sleeping for 3 seconds' }],
    },
    {
      run: 'output-parameter-1',
      example: 'output-parameter',
      async check({ run }) {
        assertPhase(run, 'Succeeded');
        assert.equal(stepOf(run, 'generate-parameter').results?.['hello-param'], 'hello world');
        assertDone(run, 'consume-parameter');
        assert.equal(stepOf(run, 'consume-parameter').results?.message, 'hello world');
        return `${run.metadata.name}: ${run.status?.phase}, hello-param "hello world" reached consume-parameter`;
      },
    },
    {
      run: 'exit-handlers-1',
      example: 'exit-handlers',
      async check({ run }) {
        assertPhase(run, 'Failed', 'Failed');
        assert.deepEqual([stepOf(run, 'intentional-fail').phase, stepOf(run, 'intentional-fail').exitCode], ['Failed', 1]);
        assertDone(run, 'notify');
        assert.deepEqual(stepOf(run, 'notify').results, { status: 'Failed', 'failed-steps': 'intentional-fail' });
        assertSkipped(run, 'celebrate');
        assertDone(run, 'cry');
        return `${run.metadata.name}: ${run.status?.phase}/${reasonOf(run)}, ${JSON.stringify(phases(run))}`;
      },
      logs: [
        { pod: 'exit-handlers-1-notify-1', step: 'notify', includes: 'send e-mail: exit-handlers-1 Failed. Failed steps: intentional-fail' },
        { pod: 'exit-handlers-1-cry-1', step: 'cry', includes: 'boohoo!' },
      ],
    },
    {
      run: 'parallelism-limit-1',
      example: 'parallelism-limit',
      // 1 s sleeps: five rounds of two, not five of 10 s.
      parameters: { seconds: 1 },
      async check(facts) {
        const { run } = facts;
        assertPhase(run, 'Succeeded');
        assert.deepEqual(stepOf(run, 'sleep').items, { total: 10, pending: 0, running: 0, succeeded: 10, failed: 0 });
        assert.equal(podNames(facts, 'sleep').length, 10);
        const peak = peakConcurrency(facts.pods, 'sleep');
        assert.ok(peak >= 1 && peak <= 2, `at most two items at once, saw ${peak}`);
        const seconds = (ms(stepOf(run, 'sleep').finishedAt) - ms(stepOf(run, 'sleep').startedAt)) / 1000;
        assert.ok(seconds >= 4, `five rounds of 1 s took ${seconds} s`);
        return `${run.metadata.name}: ${run.status?.phase}, items 10/10, at most ${peak} at once, ${seconds} s`;
      },
    },
    {
      run: 'timeouts-step-1',
      example: 'timeouts-step',
      ...(tier === 'integration' ? { parameters: { duration: '15' } } : {}),
      async check({ run }) {
        assertPhase(run, 'Failed', 'Failed');
        const step = stepOf(run, 'sleep');
        assert.deepEqual([step.phase, step.reason], ['Failed', 'TimedOut'], step.message);
        assert.match(step.message ?? '', /exceeded its timeout of 10s/);
        const seconds = (ms(step.finishedAt) - ms(step.startedAt)) / 1000;
        assert.ok(seconds >= 10, `timed out after ${seconds} s`);
        return `${run.metadata.name}: ${run.status?.phase}, step sleep ${step.phase}/${step.reason} after ${seconds} s: ${step.message}`;
      },
    },
  ];
}
