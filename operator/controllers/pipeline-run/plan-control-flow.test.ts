// The planner's control flow (pure): results into status and variables, when and the skip
// rules, forEach items within their limits and ratio, finally after every outcome, and
// failurePolicy Continue.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import { LABEL_ATTEMPT, LABEL_ITEM, LABEL_RUN, LABEL_STEP } from '../../api/v1alpha1/labels.ts';
import type { Pipeline, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { Pod } from '../../kube/pod.ts';
import { RUN_NAME, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import { parseCollection } from './collection.ts';
import { itemPodName } from './fan-out.ts';
import { MAX_LAUNCHES_PER_PASS, type RunPlan } from './plan.ts';
import { failedPod, phases, plan, pod, stepOf, stepPod, terminated, withStatus } from './testing.ts';

/** A succeeded Pod whose termination message reports these results. */
function podWithResults(name: string, results: Record<string, string>, extra: { item?: number } = {}): Pod {
  const message = JSON.stringify({ v: 1, report: { outputs: [], results } });
  const labels = { [LABEL_RUN]: RUN_NAME, [LABEL_STEP]: name, [LABEL_ATTEMPT]: '1', ...(extra.item !== undefined ? { [LABEL_ITEM]: String(extra.item) } : {}) };
  const podName = extra.item !== undefined ? itemPodName(RUN_NAME, name, extra.item, 1) : `${RUN_NAME}-${name}-1`;
  return pod(podName, name, 1, 'Succeeded', {
    metadata: { labels },
    status: { containerStatuses: [terminated(0, { name: 'publish-outputs', message })] },
  });
}

const itemPod = (stepName: string, index: number, phase: 'Running' | 'Succeeded' | 'Failed', attempt = 1): Pod =>
  pod(itemPodName(RUN_NAME, stepName, index, attempt), stepName, attempt, phase, {
    metadata: { labels: { [LABEL_RUN]: RUN_NAME, [LABEL_STEP]: stepName, [LABEL_ATTEMPT]: String(attempt), [LABEL_ITEM]: String(index) } },
    status: phase === 'Running' ? {} : { containerStatuses: [terminated(phase === 'Succeeded' ? 0 : 1, { message: `item ${index}` })] },
  });

/** Plans pass after pass, each from the status the one before wrote, with the Pods given for that pass. */
function passes(p: Pipeline, podsByPass: Pod[][], run: PipelineRun = pipelineRun()): RunPlan[] {
  const plans: RunPlan[] = [];
  let current = run;
  for (const pods of podsByPass) {
    const next = plan({ pipeline: p, run: current, pods });
    plans.push(next);
    current = withStatus(current, next.status);
  }
  return plans;
}

describe('results and when', () => {
  const coinflip = pipeline({ steps: [
    step('flip', { results: [{ name: 'side', type: 'string' }] }),
    step('heads', { dependsOn: ['flip'], when: 'steps.flip.results.side == "heads"', args: ['$(steps.flip.results.side)'] }),
    step('tails', { dependsOn: ['flip'], when: 'steps.flip.results.side == "tails"' }),
    step('after-tails', { dependsOn: ['tails'] }),
    step('uses-tails', { dependsOn: ['tails'], args: ['$(steps.flip.results.side)'], when: 'true' }),
  ] });

  it('keeps results in status, substitutes them, and skips by condition with Tekton-like rules for dependants', () => {
    const [, second, third] = passes(coinflip, [[], [podWithResults('flip', { side: 'heads\n'.trim() })], [podWithResults('flip', { side: 'heads' })]]);
    assert.deepEqual(stepOf(second!, 'flip').results, { side: 'heads' });
    assert.equal(stepOf(second!, 'tails').phase, 'Skipped');
    assert.equal(stepOf(second!, 'tails').reason, 'ConditionFalse');
    assert.equal(stepOf(second!, 'tails').message, 'when "steps.flip.results.side == "tails"" is false');
    const launches = new Map(second!.create.map((l) => [l.step.name, l]));
    assert.deepEqual([...launches.keys()].sort(), ['after-tails', 'heads', 'uses-tails']);
    assert.equal(launches.get('heads')!.variables?.results?.get('flip.side'), 'heads');
    assert.equal(third!.status.phase, 'Running');
  });

  it('skips a step that uses the results of a step skipped by its condition', () => {
    const p = pipeline({ steps: [
      step('flip', { results: [{ name: 'side', type: 'string' }] }),
      step('tails', { dependsOn: ['flip'], when: 'steps.flip.results.side == "tails"', results: [{ name: 'x', type: 'string' }] }),
      step('reads-tails', { dependsOn: ['tails'], args: ['$(steps.tails.results.x)'] }),
    ] });
    const [, second] = passes(p, [[], [podWithResults('flip', { side: 'heads' })]]);
    assert.deepEqual(phases(second!), { flip: 'Succeeded', tails: 'Skipped', 'reads-tails': 'Skipped' });
    assert.equal(stepOf(second!, 'reads-tails').reason, 'UpstreamSkipped');
    // Nothing failed and nothing is left: the run succeeds.
    assert.equal(second!.status.phase, 'Succeeded');
  });

  it('fails a step whose declared result does not fit its type, without retrying', () => {
    const p = pipeline({ steps: [step('count', { results: [{ name: 'n', type: 'int' }], retries: { limit: 3 } })] });
    const [, second] = passes(p, [[], [podWithResults('count', { n: 'many' })]]);
    assert.equal(stepOf(second!, 'count').phase, 'Failed');
    assert.equal(stepOf(second!, 'count').reason, 'InvalidResult');
    assert.match(stepOf(second!, 'count').message ?? '', /result "n" \(int\): "many" is not an integer/);
  });
});

describe('forEach', () => {
  const sweep = (forEach: StepSpec['forEach'], extra: Partial<StepSpec> = {}) => pipeline({ steps: [
    step('train', { forEach, results: [{ name: 'acc', type: 'float' }], ...extra }),
    step('pick', { dependsOn: ['train'], args: ['$(steps.train.results.acc)'] }),
  ] });

  it('starts items in index order within maxParallelism, one Pod each, named by index', () => {
    const [first] = passes(sweep({ items: ['a', 'b', 'c', 'd'], maxParallelism: 2 }), [[]]);
    assert.deepEqual(first!.create.map((l) => [l.podName, l.item]), [[`${RUN_NAME}-train-0-1`, { index: 0, value: 'a' }], [`${RUN_NAME}-train-1-1`, { index: 1, value: 'b' }]]);
    assert.deepEqual(stepOf(first!, 'train').items, { total: 4, pending: 2, running: 2, succeeded: 0, failed: 0 });
  });

  it('starts at most MAX_LAUNCHES_PER_PASS items in one pass and comes back at once for the rest', () => {
    const [first] = passes(sweep({ items: Array.from({ length: 1000 }, (_, i) => i) }), [[]]);
    assert.equal(first!.create.length, MAX_LAUNCHES_PER_PASS);
    assert.equal(first!.requeueAfterMs, 0);
    assert.deepEqual(stepOf(first!, 'train').items, { total: 1000, pending: 1000 - MAX_LAUNCHES_PER_PASS, running: MAX_LAUNCHES_PER_PASS, succeeded: 0, failed: 0 });
  });

  it('counts the run parallelism per running item', () => {
    const [first] = passes(sweep({ items: [1, 2, 3, 4, 5] }), [[]], pipelineRun({ parallelism: 3 }));
    assert.equal(first!.create.length, 3);
  });

  it('collects the items that succeeded, in index order, and feeds their results to the next step in the same pass', () => {
    const done = [0, 1, 2].map((i) => podWithResults('train', { acc: String(0.5 + i / 10) }, { item: i }));
    const [, second] = passes(sweep({ items: [10, 20, 30] }), [[], done]);
    const train = stepOf(second!, 'train');
    assert.equal(train.phase, 'Succeeded');
    assert.deepEqual(train.items, { total: 3, pending: 0, running: 0, succeeded: 3, failed: 0 });
    assert.equal(second!.collections.length, 1);
    const collection = parseCollection(second!.collections[0]!, train.collection!.digest);
    assert.deepEqual(collection.items.map((i) => [i.index, i.results?.acc]), [[0, '0.5'], [1, '0.6'], [2, '0.7']]);
    const pick = second!.create.find((l) => l.step.name === 'pick');
    assert.equal(pick?.variables?.results?.get('train.acc'), '[0.5,0.6,0.7]');
  });

  it('tolerates failures within minSuccessRatio, and fails as soon as the ratio is out of reach', () => {
    const tolerant = sweep({ items: [0, 1, 2, 3, 4], minSuccessRatio: 0.8 });
    const oneFailed = [itemPod('train', 0, 'Failed'), ...[1, 2, 3, 4].map((i) => podWithResults('train', { acc: '1' }, { item: i }))];
    const [, ok] = passes(tolerant, [[], oneFailed]);
    assert.equal(stepOf(ok!, 'train').phase, 'Succeeded');
    assert.deepEqual(stepOf(ok!, 'train').failedItems?.map((f) => f.index), [0]);
    const twoFailed = [itemPod('train', 0, 'Failed'), itemPod('train', 1, 'Failed'), itemPod('train', 2, 'Running')];
    const [, failed] = passes(tolerant, [[], twoFailed]);
    const train = stepOf(failed!, 'train');
    assert.equal(train.phase, 'Failed');
    assert.equal(train.reason, 'ItemsFailed');
    assert.match(train.message ?? '', /^2 of 5 items failed \(minSuccessRatio 0\.8\)/);
    assert.ok(failed!.delete.some((d) => d.metadata.name === `${RUN_NAME}-train-2-1`), 'the running item is stopped');
  });

  it('retries a failed item by its retries, as a new attempt of that item only', () => {
    const p = sweep({ items: [0, 1] }, { retries: { limit: 1, backoffSeconds: 30 } });
    const [, second] = passes(p, [[], [itemPod('train', 0, 'Failed'), itemPod('train', 1, 'Running')]]);
    assert.equal(second!.create.length, 0, 'the retry waits for its backoff');
    assert.ok(second!.requeueAfterMs !== undefined && second!.requeueAfterMs <= 30_000);
    assert.deepEqual(stepOf(second!, 'train').items, { total: 2, pending: 1, running: 1, succeeded: 0, failed: 0 });
  });

  it('keys the step after a forEach step by its items\' digests, so two runs with the same items share a cache key', () => {
    const p = pipeline({ steps: [
      step('train', { forEach: { items: [1, 2] }, outputs: [{ name: 'model', type: 'model' }] }),
      step('pick', { dependsOn: ['train'], inputs: [{ name: 'models', from: { step: 'train', output: 'model' } }] }),
    ] });
    const keyIn = (runUid: string) => {
      const items = [0, 1].map((index) => ({ index, outputs: [{ name: 'model', uri: `file:///store/ns/runs/${runUid}/train/items/${index}/1/model.tar`, digest: `sha256:${String(index).repeat(64)}` }] }));
      const collection = { total: 2, items };
      const train = { name: 'train', phase: 'Succeeded' as const, collection: { uri: `file:///store/ns/blobs/sha256/${runUid}`, digest: `sha256:${runUid.padEnd(64, '0')}`, size: 10 } };
      const run = withStatus(pipelineRun({ uid: runUid }), { phase: 'Running', startedAt: '2030-01-01T11:00:00Z', steps: [train, { name: 'pick', phase: 'Pending', attempts: 0 }] });
      const next = plan({ pipeline: p, run, collections: new Map([['train', collection]]) });
      return next.create.find((l) => l.step.name === 'pick')?.cache?.key;
    };
    const first = keyIn('aaaa');
    assert.ok(first);
    assert.equal(keyIn('bbbb'), first);
  });

  it('fails a forEach over a parameter that is not a list, before any Pod', () => {
    const p = pipeline({ parameters: [{ name: 'xs', type: 'json', default: '[1]' }], steps: [step('each', { forEach: { parameter: 'xs' } })] });
    const [first] = passes(p, [[]], pipelineRun({ parameters: [{ name: 'xs', value: '{"a":1}' }] }));
    assert.equal(stepOf(first!, 'each').reason, 'InvalidForEach');
    assert.equal(first!.create.length, 0);
  });
});

describe('finally and failurePolicy', () => {
  const withFinally = (extra: Partial<Pipeline['spec']> = {}) => pipeline({ ...extra, steps: [step('a'), step('b', { dependsOn: ['a'] })], finally: [
    step('notify', { args: ['$(run.status)', '$(run.failedSteps)'] }),
    step('cleanup', { dependsOn: ['notify'] }),
  ] });

  it('runs finally steps after a failure, with the outcome in their variables, then ends Failed', () => {
    const [, second] = passes(withFinally(), [[], [failedPod('a', 1)]]);
    assert.equal(second!.status.phase, 'Running');
    assert.equal(second!.status.outcome?.phase, 'Failed');
    assert.equal(stepOf(second!, 'b').phase, 'Skipped');
    const notify = second!.create.find((l) => l.step.name === 'notify');
    assert.deepEqual(notify?.variables?.run, { status: 'Failed', failedSteps: ['a'] });
    assert.equal(second!.status.conditions?.find((c) => c.type === 'Succeeded')?.reason, 'RunningFinally');
    const [, , , fourth] = passes(withFinally(), [[], [failedPod('a', 1)], [failedPod('a', 1), stepPod('notify', 1, 'Succeeded')], [failedPod('a', 1), stepPod('notify', 1, 'Succeeded'), stepPod('cleanup', 1, 'Succeeded')]]);
    assert.equal(fourth!.status.phase, 'Failed');
    assert.equal(fourth!.status.conditions?.find((c) => c.type === 'Succeeded')?.reason, 'Failed');
  });

  it('runs finally steps after a cancel, and the run ends Cancelled', () => {
    const [first] = passes(withFinally(), [[]]);
    const cancelled = withStatus(pipelineRun({ cancel: true }), first!.status);
    const next = plan({ pipeline: withFinally(), run: cancelled, pods: [stepPod('a', 1, 'Running')] });
    assert.equal(next.status.outcome?.phase, 'Cancelled');
    assert.equal(stepOf(next, 'a').phase, 'Cancelled');
    assert.ok(next.delete.some((d) => d.metadata.name === `${RUN_NAME}-a-1`));
    assert.deepEqual(next.create.map((l) => l.step.name), ['notify']);
  });

  it('fails a run whose main steps succeeded when a finally step fails', () => {
    const done = [stepPod('a', 1, 'Succeeded'), stepPod('b', 1, 'Succeeded')];
    const plans = passes(withFinally(), [[], [stepPod('a', 1, 'Succeeded')], done, [...done, failedPod('notify', 1)], [...done, failedPod('notify', 1)]]);
    const last = plans.at(-1)!;
    assert.equal(last.status.phase, 'Failed');
    assert.equal(last.status.conditions?.find((c) => c.type === 'Succeeded')?.reason, 'FinallyFailed');
    assert.equal(stepOf(last, 'cleanup').reason, 'UpstreamFailed');
  });

  it('lets independent branches go on under failurePolicy Continue', () => {
    const p = pipeline({ failurePolicy: 'Continue', steps: [step('a'), step('b'), step('c', { dependsOn: ['a'] }), step('d', { dependsOn: ['b'] })] });
    const [, second] = passes(p, [[], [failedPod('a', 1), stepPod('b', 1, 'Succeeded')]]);
    assert.equal(second!.status.phase, 'Running');
    assert.deepEqual(phases(second!), { a: 'Failed', b: 'Succeeded', c: 'Skipped', d: 'Running' });
    assert.equal(stepOf(second!, 'c').reason, 'UpstreamFailed');
    const [, , third] = passes(p, [[], [failedPod('a', 1), stepPod('b', 1, 'Succeeded')], [failedPod('a', 1), stepPod('b', 1, 'Succeeded'), stepPod('d', 1, 'Succeeded')]]);
    assert.equal(third!.status.phase, 'Failed');
  });
});
