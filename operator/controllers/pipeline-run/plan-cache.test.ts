import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONDITION_SUCCEEDED, Reasons, findCondition } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { ExternalInput } from '../../configuration/pipeline-configuration.ts';
import { cacheKeyOf } from './cache-key.ts';
import { planRun } from './plan.ts';
import { RUN_NAME, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import {
  at, cacheByStep, created, eventReasons, factsFor, launchOf, phases, plan, stamp, startFor, stepOf, stepPod, stored, succeededPod,
  withExternalInputs, type ReusedLike,
} from './testing.ts';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const output = (name: string, c: string) => ({ name, uri: `file:///store/ml/blobs/${digest(c)}`, digest: digest(c), size: 10 });

/** The configuration planRun sees for this pipeline and run. */
const configurationOf = (p: Pipeline, run = pipelineRun()) => {
  const start = startFor(p, run);
  assert.equal(start.kind, 'frozen');
  return start.configuration;
};

/** A status as a previous reconcile wrote it, with these steps. */
const statusWith = (steps: StepStatus[]): PipelineRunStatus => ({ phase: 'Running', startedAt: stamp(-120), steps });

// a ──x──► b ──y──► c
const chain = (): StepSpec[] => [
  step('a', { outputs: [{ name: 'x', type: 'dataset' }] }),
  step('b', { dependsOn: ['a'], inputs: [{ name: 'in', from: { step: 'a', output: 'x' } }], outputs: [{ name: 'y', type: 'model' }] }),
  step('c', { dependsOn: ['b'], inputs: [{ name: 'in', from: { step: 'b', output: 'y' } }], outputs: [{ name: 'z', type: 'metrics' }] }),
];
const REUSED: Record<string, ReusedLike> = {
  a: { run: 'r0', outputs: [output('x', '1')] },
  b: { run: 'r0', outputs: [output('y', '2')], metrics: { accuracy: 0.9 } },
  c: { run: 'r-old', outputs: [output('z', '3')] },
};
const reuse = (...names: string[]) => new Map(names.map((n) => [n, REUSED[n]!]));

describe('planRun caching: launches carry a cache key', () => {
  const p = pipeline({ steps: [step('a', { args: ['--lr', '$(params.lr)'] })], parameters: [{ name: 'lr', type: 'float', default: '0.1' }] });

  it('gives a cacheable Pending step a key and components, and records the key', () => {
    const first = plan({ pipeline: p });
    const launch = launchOf(first, 'a');
    const configuration = configurationOf(p);
    const expected = cacheKeyOf(configuration.spec.steps[0]!, new Map([['lr', '0.1']]), []);
    assert.deepEqual(launch.cache, expected);
    assert.match(launch.cache?.key ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(launch.cache?.components ?? {}).sort(), ['args', 'command', 'env', 'image', 'inputs', 'outputs', 'parameters', 'version']);
    assert.equal(stepOf(first, 'a').cacheKey, expected.key);
  });

  it('gives the same step the same key in another run', () => {
    const other = pipelineRun({ name: 'r2' });
    const mine = launchOf(plan({ pipeline: p }), 'a').cache;
    const theirs = launchOf(plan({ pipeline: p, run: other }), 'a').cache;
    assert.deepEqual(theirs, mine);
  });

  it("changes the key with a used parameter's value", () => {
    const run = pipelineRun({ parameters: [{ name: 'lr', value: '0.2' }] });
    const changed = launchOf(plan({ pipeline: p, run }), 'a').cache;
    const base = launchOf(plan({ pipeline: p }), 'a').cache;
    assert.notEqual(changed?.key, base?.key);
  });

  // [name, run cachePolicy, step cache]
  const disabled: Array<[string, 'Disabled' | undefined, StepSpec['cache']]> = [
    ['cachePolicy Disabled on the run', 'Disabled', undefined],
    ['cache.policy Disabled on the step', undefined, { policy: 'Disabled' }],
    ['both disabled', 'Disabled', { policy: 'Disabled' }],
  ];
  for (const [name, cachePolicy, cache] of disabled) {
    it(`gives no key with ${name}`, () => {
      const q = pipeline({ steps: [step('a', cache ? { cache } : {})] });
      const first = plan({ pipeline: q, run: pipelineRun(cachePolicy ? { cachePolicy } : {}) });
      assert.deepEqual(created(first), ['r1-a-1']);
      assert.equal(launchOf(first, 'a').cache, undefined);
      assert.equal('cache' in launchOf(first, 'a'), false);
      assert.equal(stepOf(first, 'a').cacheKey, undefined);
    });
  }

  it('keeps the key only on steps that allow caching', () => {
    const q = pipeline({ steps: [step('a'), step('b', { cache: { policy: 'Disabled' } })] });
    const first = plan({ pipeline: q });
    assert.ok(launchOf(first, 'a').cache);
    assert.equal(launchOf(first, 'b').cache, undefined);
  });

  it("gives a Retrying step's relaunch no cache", () => {
    const q = pipeline({ steps: [step('a', { retries: { limit: 2 } })] });
    const status = statusWith([{
      name: 'a', phase: 'Retrying', attempts: 1, podName: `${RUN_NAME}-a-1`, startedAt: stamp(-120), finishedAt: stamp(-30),
      retryAt: at(-5).toISOString(), reason: Reasons.Failed, message: 'attempt 1 boom', cacheKey: digest('a'),
    }]);
    const next = plan({ pipeline: q, run: pipelineRun({ status }), pods: [stepPod('a', 1, 'Failed')] });
    assert.deepEqual(created(next), ['r1-a-2']);
    const launch = launchOf(next, 'a');
    assert.equal(launch.attempt, 2);
    assert.equal(launch.cache, undefined);
    assert.equal('cache' in launch, false);
    assert.equal(stepOf(next, 'a').phase, 'Running');
  });

  it('ignores reuse for a Retrying step', () => {
    const q = pipeline({ steps: [step('a', { retries: { limit: 2 } })] });
    const status = statusWith([{ name: 'a', phase: 'Retrying', attempts: 1, podName: `${RUN_NAME}-a-1`, retryAt: at(-5).toISOString() }]);
    const next = plan({ pipeline: q, run: pipelineRun({ status }), reuse: new Map([['a', { run: 'r0', outputs: [] }]]) });
    assert.deepEqual(created(next), ['r1-a-2']);
    assert.equal(stepOf(next, 'a').phase, 'Running');
  });
});

describe('planRun caching: inputs of a launch', () => {
  const BASE: ExternalInput = { step: 'fit', input: 'base', uri: 'file:///store/ml/blobs/base', digest: digest('9'), model: { name: 'iris', version: 2 } };
  const p = pipeline({ steps: [
    step('prepare', { outputs: [{ name: 'dataset', type: 'dataset' }] }),
    step('fit', {
      dependsOn: ['prepare'],
      inputs: [
        { name: 'data', from: { step: 'prepare', output: 'dataset' } },
        { name: 'base', model: { name: 'iris', stage: 'Production' } },
      ],
      outputs: [{ name: 'model', type: 'model' }],
    }),
  ] });
  const DATASET = output('dataset', '1');
  const status = statusWith([
    { name: 'prepare', phase: 'Succeeded', attempts: 1, podName: `${RUN_NAME}-prepare-1`, startedAt: stamp(-120), finishedAt: stamp(-60), outputs: [DATASET] },
    { name: 'fit', phase: 'Pending', attempts: 0 },
  ]);

  it('come from upstream outputs and pinned external inputs, and key the cache by digest', () => {
    const run = pipelineRun({ status });
    const start = withExternalInputs(startFor(p, run), [BASE]);
    const next = planRun(factsFor({ run, start, cache: cacheByStep() }));
    assert.deepEqual(created(next), ['r1-fit-1']);
    const launch = launchOf(next, 'fit');
    const inputs = [
      { name: 'data', uri: DATASET.uri, digest: DATASET.digest },
      { name: 'base', uri: BASE.uri, digest: BASE.digest },
    ];
    assert.deepEqual(launch.inputs, inputs);
    assert.ok(start.kind === 'frozen');
    assert.deepEqual(launch.cache, cacheKeyOf(start.configuration.spec.steps[1]!, new Map(), inputs));
    assert.equal(stepOf(next, 'fit').cacheKey, launch.cache?.key);
  });

  it("change the key when the external input's digest changes", () => {
    const run = pipelineRun({ status });
    const keyWith = (e: ExternalInput) => launchOf(planRun(factsFor({ run, start: withExternalInputs(startFor(p, run), [e]), cache: cacheByStep() })), 'fit').cache?.key;
    assert.notEqual(keyWith({ ...BASE, digest: digest('8') }), keyWith(BASE));
    assert.equal(keyWith({ ...BASE, uri: 'gs://elsewhere/base' }), keyWith(BASE), 'not when only its URI changes');
  });

  it('are empty for an external input the configuration does not pin', () => {
    const run = pipelineRun({ status });
    const launch = launchOf(plan({ pipeline: p, run }), 'fit');
    assert.deepEqual(launch.inputs, [
      { name: 'data', uri: DATASET.uri, digest: DATASET.digest },
      { name: 'base', uri: '', digest: '' },
    ]);
  });

  it('are filled for a Pod re-created for a running attempt', () => {
    const running = statusWith([
      status.steps![0]!,
      { name: 'fit', phase: 'Running', attempts: 1, podName: `${RUN_NAME}-fit-1`, startedAt: stamp(-30) },
    ]);
    const run = pipelineRun({ status: running });
    const next = planRun(factsFor({ run, start: withExternalInputs(startFor(p, run), [BASE]), cache: cacheByStep() }));
    assert.deepEqual(created(next), ['r1-fit-1']);
    assert.deepEqual(launchOf(next, 'fit').inputs.map((i) => i.digest), [DATASET.digest, BASE.digest]);
    assert.equal(launchOf(next, 'fit').cache, undefined, 'the key was looked up at the first launch');
  });
});

describe('planRun caching: reused results', () => {
  const p = pipeline({ steps: chain() });

  it('marks a reused step Cached without creating a Pod', () => {
    const first = plan({ pipeline: p, reuse: reuse('a') });
    assert.deepEqual(stored(stepOf(first, 'a')), {
      name: 'a', phase: 'Cached', attempts: 0, cachedFrom: 'r0', outputs: [output('x', '1')],
      cacheKey: launchOf(plan({ pipeline: p }), 'a').cache?.key, startedAt: stamp(0), finishedAt: stamp(0),
    });
    assert.ok(!created(first).includes('r1-a-1'));
    assert.equal(first.events[0]?.reason, 'StepCached');
    assert.deepEqual(first.events[0], { type: 'Normal', reason: 'StepCached', message: 'step "a" reused the results of run "r0"' });
    assert.equal(first.status.startedAt, stamp(0));
  });

  it('keeps the metrics of the reused result', () => {
    const status = statusWith([
      { name: 'a', phase: 'Succeeded', attempts: 1, outputs: [output('x', '1')] },
      { name: 'b', phase: 'Pending', attempts: 0 },
      { name: 'c', phase: 'Pending', attempts: 0 },
    ]);
    const next = plan({ pipeline: p, run: pipelineRun({ status }), reuse: reuse('b') });
    assert.equal(stepOf(next, 'b').phase, 'Cached');
    assert.deepEqual(stepOf(next, 'b').metrics, { accuracy: 0.9 });
    assert.equal(stepOf(next, 'b').cachedFrom, 'r0');
  });

  it('makes dependants ready in the same plan: a and b reused launch only c', () => {
    const first = plan({ pipeline: p, reuse: reuse('a', 'b') });
    assert.deepEqual(phases(first), { a: 'Cached', b: 'Cached', c: 'Running' });
    assert.deepEqual(created(first), ['r1-c-1']);
    assert.deepEqual(eventReasons(first), ['StepCached', 'StepCached', 'StepStarted']);
    assert.deepEqual(launchOf(first, 'c').inputs, [{ name: 'in', uri: output('y', '2').uri, digest: digest('2') }]);
    assert.ok(launchOf(first, 'c').cache, 'c is cacheable and gets a key');
    assert.equal(first.status.phase, 'Running');
    assert.equal(first.status.progress, '2/3');
  });

  it('does not reuse a step whose dependencies are not done', () => {
    const first = plan({ pipeline: p, reuse: reuse('b', 'c') });
    assert.deepEqual(phases(first), { a: 'Running', b: 'Pending', c: 'Pending' });
    assert.deepEqual(created(first), ['r1-a-1']);
    assert.ok(!eventReasons(first).includes('StepCached'));
  });

  it('records a reused step with no cache key when caching is disabled (a resumed run)', () => {
    const first = plan({ pipeline: p, run: pipelineRun({ cachePolicy: 'Disabled' }), resumed: new Map([['a', { ...REUSED.a!, origin: 'r0/a' }]]) });
    assert.equal(stepOf(first, 'a').phase, 'Cached');
    assert.equal(stepOf(first, 'a').cacheKey, undefined);
    assert.equal(launchOf(first, 'b').cache, undefined);
  });

  it('does not count reused steps against parallelism', () => {
    const first = plan({ pipeline: pipeline({ steps: [step('s1'), step('s2'), step('s3')] }), run: pipelineRun({ parallelism: 1 }), reuse: new Map([['s1', { run: 'r0', outputs: [] }]]) });
    assert.deepEqual(phases(first), { s1: 'Cached', s2: 'Running', s3: 'Pending' });
    assert.equal(stepOf(first, 's1').outputs, undefined, 'no empty outputs list');
  });

  it('succeeds the run when every step is reused', () => {
    const done = plan({ pipeline: p, reuse: reuse('a', 'b', 'c') });
    assert.deepEqual(phases(done), { a: 'Cached', b: 'Cached', c: 'Cached' });
    assert.deepEqual(created(done), []);
    assert.equal(done.status.phase, 'Succeeded');
    assert.equal(done.status.startedAt, stamp(0));
    assert.equal(done.status.finishedAt, stamp(0));
    const condition = findCondition(done.status.conditions, CONDITION_SUCCEEDED);
    assert.deepEqual([condition?.status, condition?.reason, condition?.message], ['True', Reasons.Succeeded, 'all 3 steps succeeded (3 from cache)']);
    assert.equal(done.status.progress, '3/3', 'cached steps count as done');
    assert.deepEqual(eventReasons(done), ['StepCached', 'StepCached', 'StepCached', 'RunSucceeded']);
    assert.equal(done.events.at(-1)?.message, 'all 3 steps succeeded (3 from cache)');
    assert.equal(done.requeueAfterMs, undefined);
  });
});

describe('planRun caching: waiting for an identical step', () => {
  const p = pipeline({ steps: [step('a'), step('b')] });

  it('keeps the step Pending, says why, and looks again in 2 s', () => {
    const first = plan({ pipeline: p, waitFor: new Map([['a', 'r9']]) });
    assert.deepEqual(phases(first), { a: 'Pending', b: 'Running' });
    assert.deepEqual(created(first), ['r1-b-1']);
    const a = stepOf(first, 'a');
    assert.equal(a.reason, 'WaitingForCache');
    assert.equal(a.message, 'an identical step is running in run "r9"; waiting for its result');
    assert.equal(a.attempts, 0);
    assert.equal(a.cacheKey, undefined);
    assert.equal(first.requeueAfterMs, 2000);
    // The run says what it waits for, not just that it waits.
    assert.equal(first.status.conditions?.find((c) => c.type === 'Succeeded')?.message,
      'running: b; step "a": an identical step is running in run "r9"; waiting for its result');
  });

  it('prefers a result to reuse over waiting', () => {
    const first = plan({ pipeline: p, waitFor: new Map([['a', 'r9']]), reuse: new Map([['a', { run: 'r9', outputs: [] }]]) });
    assert.equal(stepOf(first, 'a').phase, 'Cached');
    assert.equal(stepOf(first, 'a').reason, undefined);
  });

  it('clears the waiting reason once the step launches', () => {
    const waiting = plan({ pipeline: p, waitFor: new Map([['a', 'r9']]) });
    const next = plan({ pipeline: p, run: pipelineRun({ status: waiting.status }), pods: [stepPod('b', 1, 'Running')], now: at(2) });
    assert.deepEqual(created(next), ['r1-a-1']);
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason, a.message], ['Running', undefined, undefined]);
  });
});

describe('planRun caching: messages of a succeeded step', () => {
  const p = pipeline({ steps: [step('a'), step('b')] });
  // [previous message, message after the Pod succeeded]
  const cases: Array<[string, string | undefined, string | undefined]> = [
    ['keeps a cache-miss explanation', 'cache miss: image, inputs differ from run "r0"', 'cache miss: image, inputs differ from run "r0"'],
    ['clears a retry message', 'attempt 1 exited with code 1', undefined],
    ['clears a waiting message', 'an identical step is running in run "r9"; waiting for its result', undefined],
    ['has none when there was none', undefined, undefined],
  ];
  for (const [name, before, after] of cases) {
    it(name, () => {
      const status = statusWith([
        { name: 'a', phase: 'Running', attempts: 1, podName: `${RUN_NAME}-a-1`, startedAt: stamp(-60), cacheKey: digest('a'), ...(before ? { message: before } : {}) },
        { name: 'b', phase: 'Running', attempts: 1, podName: `${RUN_NAME}-b-1`, startedAt: stamp(-60) },
      ]);
      const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [succeededPod('a', 1), stepPod('b', 1, 'Running')] });
      const a = stepOf(next, 'a');
      assert.equal(a.phase, 'Succeeded');
      assert.equal(a.message, after);
      assert.equal(a.reason, undefined);
      assert.equal(a.cacheKey, digest('a'), 'the key recorded at launch stays');
    });
  }
});
