import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONDITION_SUCCEEDED, Reasons, findCondition } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRun, PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { MAX_STEPS, type StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { Pod } from '../../kube/pod.ts';
import { foldPass } from './fold.ts';
import { collapseEvents, planFinishedRun, type RunEvent, type RunPlan } from './plan.ts';
import { RUN_NAME, diamond, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import {
  NOW, at, condition, created, deleted, eventReasons, failedPod, phases, plan, runningStep, stamp, stepOf, stepPod, stored, succeededPod, withStatus,
} from './testing.ts';

/** A status in which the given steps have the given phases (attempts 1 unless Pending), as a previous reconcile wrote it. */
function runningStatus(steps: Record<string, Partial<StepStatus> & { phase: StepStatus['phase'] }>): PipelineRunStatus {
  return {
    phase: 'Running',
    startedAt: stamp(-120),
    steps: Object.entries(steps).map(([name, s]) => ({
      name,
      attempts: s.phase === 'Pending' ? 0 : 1,
      ...(s.phase === 'Pending' ? {} : { podName: `${RUN_NAME}-${name}-${s.attempts ?? 1}`, startedAt: stamp(-120) }),
      ...s,
    })),
  };
}

describe('planRun: a diamond, step by step', () => {
  const p = pipeline({ steps: diamond() });

  it('first reconcile launches only the root step', () => {
    const first = plan({ pipeline: p });
    assert.deepEqual(created(first), ['r1-a-1']);
    assert.equal(first.create[0]?.attempt, 1);
    assert.equal(first.create[0]?.step.name, 'a');
    assert.deepEqual(phases(first), { a: 'Running', b: 'Pending', c: 'Pending', d: 'Pending' });
    assert.equal(first.status.phase, 'Running');
    assert.equal(first.status.startedAt, '2030-01-01T12:00:00Z');
    assert.equal(first.status.progress, '0/4');
    assert.equal(first.status.observedGeneration, 1);
    const { cacheKey, ...a } = stored(stepOf(first, 'a'));
    assert.deepEqual(a, { name: 'a', phase: 'Running', attempts: 1, podName: 'r1-a-1', startedAt: '2030-01-01T12:00:00Z' });
    assert.equal(cacheKey, first.create[0]?.cache?.key, 'the launched step records its cache key');
    assert.deepEqual(first.status.pipeline?.name, 'train');
    assert.match(first.status.pipeline?.specHash ?? '', /^sha256:[0-9a-f]{64}$/);
    const c = condition(first);
    assert.equal(c.status, 'Unknown');
    assert.equal(c.reason, Reasons.Running);
    assert.equal(c.message, 'running: a');
    assert.deepEqual(eventReasons(first), ['StepStarted']);
    assert.deepEqual(first.delete, []);
    assert.equal(first.requeueAfterMs, undefined);
  });

  it("after a's Pod succeeded, b and c are launched together", () => {
    const first = plan({ pipeline: p });
    const second = plan({ pipeline: p, run: withStatus(pipelineRun(), first.status), pods: [succeededPod('a', 1)], now: at(30) });
    assert.deepEqual(created(second).sort(), ['r1-b-1', 'r1-c-1']);
    assert.deepEqual(phases(second), { a: 'Succeeded', b: 'Running', c: 'Running', d: 'Pending' });
    assert.equal(second.status.progress, '1/4');
    assert.equal(stepOf(second, 'a').finishedAt, stamp(-1));
    assert.equal(second.status.startedAt, first.status.startedAt, 'the run start does not move');
    assert.deepEqual(eventReasons(second), ['StepSucceeded', 'StepStarted', 'StepStarted']);
  });

  it('d waits for both b and c, then the run succeeds', () => {
    const status = runningStatus({ a: { phase: 'Succeeded' }, b: { phase: 'Running' }, c: { phase: 'Running' }, d: { phase: 'Pending' } });
    const pods = [succeededPod('a', 1), succeededPod('b', 1), stepPod('c', 1, 'Running')];
    const third = plan({ pipeline: p, run: pipelineRun({ status }), pods });
    assert.deepEqual(created(third), []);
    assert.deepEqual(phases(third), { a: 'Succeeded', b: 'Succeeded', c: 'Running', d: 'Pending' });
    assert.equal(third.status.progress, '2/4');

    const fourth = plan({ pipeline: p, run: pipelineRun({ status: third.status }), pods: [...pods.slice(0, 2), succeededPod('c', 1)] });
    assert.deepEqual(created(fourth), ['r1-d-1']);

    const done = plan({ pipeline: p, run: pipelineRun({ status: fourth.status }), pods: [...pods.slice(0, 2), succeededPod('c', 1), succeededPod('d', 1)], now: at(60) });
    assert.equal(done.status.phase, 'Succeeded');
    assert.equal(done.status.progress, '4/4');
    assert.equal(done.status.finishedAt, stamp(60));
    const c = condition(done);
    assert.deepEqual([c.status, c.reason], ['True', Reasons.Succeeded]);
    assert.ok(eventReasons(done).includes('RunSucceeded'));
  });
});

describe('planRun: parallelism', () => {
  const fanOut = pipeline({ steps: ['s1', 's2', 's3', 's4', 's5'].map((n) => step(n)) });

  it('launches at most `parallelism` steps, in declaration order', () => {
    const first = plan({ pipeline: fanOut, run: pipelineRun({ parallelism: 2 }) });
    assert.deepEqual(created(first), ['r1-s1-1', 'r1-s2-1']);
    assert.deepEqual(phases(first), { s1: 'Running', s2: 'Running', s3: 'Pending', s4: 'Pending', s5: 'Pending' });
  });

  it('counts running steps against the limit and fills a freed slot', () => {
    const status = runningStatus({ s1: { phase: 'Running' }, s2: { phase: 'Running' }, s3: { phase: 'Pending' }, s4: { phase: 'Pending' }, s5: { phase: 'Pending' } });
    const busy = plan({ pipeline: fanOut, run: pipelineRun({ parallelism: 2, status }), pods: [stepPod('s1', 1, 'Running'), stepPod('s2', 1, 'Running')] });
    assert.deepEqual(created(busy), []);
    const freed = plan({ pipeline: fanOut, run: pipelineRun({ parallelism: 2, status }), pods: [succeededPod('s1', 1), stepPod('s2', 1, 'Running')] });
    assert.deepEqual(created(freed), ['r1-s3-1']);
  });

  it('limits b and c of a diamond to one at a time', () => {
    const status = runningStatus({ a: { phase: 'Running' }, b: { phase: 'Pending' }, c: { phase: 'Pending' }, d: { phase: 'Pending' } });
    const next = plan({ pipeline: pipeline({ steps: diamond() }), run: pipelineRun({ parallelism: 1, status }), pods: [succeededPod('a', 1)] });
    assert.deepEqual(created(next), ['r1-b-1']);
    assert.deepEqual(phases(next), { a: 'Succeeded', b: 'Running', c: 'Pending', d: 'Pending' });
  });
});

describe('planRun: retries', () => {
  const retrying = (retries: StepSpec['retries']) => pipeline({ steps: [step('a', { retries }), step('b', { dependsOn: ['a'] })] });

  it('a failed Pod with retries left makes the step Retrying after backoffSeconds', () => {
    const p = retrying({ limit: 2, backoffSeconds: 5, maxBackoffSeconds: 8 });
    const status = runningStatus({ a: { phase: 'Running' }, b: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [failedPod('a', 1, 3, 'CUDA out of memory')] });
    const a = stepOf(next, 'a');
    assert.equal(a.phase, 'Retrying');
    assert.equal(a.attempts, 1);
    assert.equal(a.reason, Reasons.Failed);
    assert.equal(a.retryAt, at(5).toISOString());
    assert.match(a.message ?? '', /^attempt 1 container step exited with code 3: CUDA out of memory$/);
    assert.equal(next.requeueAfterMs, 5000);
    assert.deepEqual(created(next), []);
    assert.equal(next.status.phase, 'Running');
    assert.equal(condition(next).message, 'retrying: a');
    assert.deepEqual(eventReasons(next), ['StepRetrying']);
    assert.equal(next.events[0]?.type, 'Warning');
  });

  it('before retryAt nothing is launched and the requeue is the time left', () => {
    const p = retrying({ limit: 2, backoffSeconds: 5 });
    const status = runningStatus({ a: { phase: 'Retrying', retryAt: at(5).toISOString() }, b: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [failedPod('a', 1)], now: at(2) });
    assert.deepEqual(created(next), []);
    assert.equal(stepOf(next, 'a').phase, 'Retrying');
    assert.equal(next.requeueAfterMs, 3000);
  });

  it('once retryAt is reached, attempt 2 is launched as <run>-<step>-2', () => {
    const p = retrying({ limit: 2, backoffSeconds: 5 });
    const status = runningStatus({ a: { phase: 'Retrying', retryAt: at(5).toISOString(), reason: 'Failed', message: 'attempt 1 …' }, b: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [failedPod('a', 1)], now: at(5) });
    assert.deepEqual(created(next), ['r1-a-2']);
    assert.equal(next.create[0]?.attempt, 2);
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.attempts, a.podName, a.retryAt, a.reason, a.message], ['Running', 2, 'r1-a-2', undefined, undefined, undefined]);
    assert.equal(a.startedAt, stamp(-120), 'startedAt is the first attempt start');
    assert.deepEqual(next.delete, [], 'the failed Pod of attempt 1 is not running, nothing to delete');
    assert.equal(next.requeueAfterMs, undefined, 'nothing timed is left to wait for');
  });

  it('the 2nd retry waits twice as long, capped by maxBackoffSeconds', () => {
    const p = retrying({ limit: 3, backoffSeconds: 5, maxBackoffSeconds: 8 });
    const status = runningStatus({ a: { phase: 'Running', attempts: 2 }, b: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [failedPod('a', 1), failedPod('a', 2)] });
    assert.equal(stepOf(next, 'a').retryAt, at(8).toISOString());
    assert.equal(next.requeueAfterMs, 8000);

    const uncapped = retrying({ limit: 3, backoffSeconds: 5 });
    const doubled = plan({ pipeline: uncapped, run: pipelineRun({ status }), pods: [failedPod('a', 1), failedPod('a', 2)] });
    assert.equal(stepOf(doubled, 'a').retryAt, at(10).toISOString());
    assert.equal(doubled.requeueAfterMs, 10_000);
  });

  it('a step whose retry time has come but finds no free slot does not ask for an immediate requeue', () => {
    // The running step's Pod will wake the run when it finishes; requeueing now would spin.
    const p = pipeline({ steps: [step('a', { retries: { limit: 1 } }), step('b')] });
    const status = runningStatus({ a: { phase: 'Retrying', retryAt: at(-1).toISOString() }, b: { phase: 'Running' } });
    const next = plan({ pipeline: p, run: pipelineRun({ parallelism: 1, status }), pods: [failedPod('a', 1), stepPod('b', 1, 'Running')] });
    assert.deepEqual(created(next), []);
    assert.equal(stepOf(next, 'a').phase, 'Retrying');
    assert.equal(next.requeueAfterMs, undefined);
  });

  it('with no retries left the run fails: message names the step, Pending steps Skipped, running siblings Cancelled', () => {
    const p = pipeline({ steps: diamond() });
    const status = runningStatus({ a: { phase: 'Succeeded' }, b: { phase: 'Running' }, c: { phase: 'Running' }, d: { phase: 'Pending' } });
    const pods = [succeededPod('a', 1), failedPod('b', 1, 2, 'bad input'), stepPod('c', 1, 'Running')];
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods, now: at(10) });
    assert.equal(next.status.phase, 'Failed');
    assert.deepEqual(phases(next), { a: 'Succeeded', b: 'Failed', c: 'Cancelled', d: 'Skipped' });
    assert.equal(stepOf(next, 'b').reason, Reasons.Failed);
    assert.equal(stepOf(next, 'b').message, 'container step exited with code 2: bad input');
    assert.equal(stepOf(next, 'c').finishedAt, stamp(10));
    assert.deepEqual(deleted(next), ['r1-c-1']);
    assert.deepEqual(created(next), []);
    assert.equal(next.status.finishedAt, stamp(10));
    assert.equal(next.status.progress, '1/4');
    const c = condition(next);
    assert.deepEqual([c.status, c.reason], ['False', Reasons.Failed]);
    assert.equal(c.message, 'step "b" failed: container step exited with code 2: bad input');
    assert.deepEqual(eventReasons(next), ['StepFailed', 'RunFailed']);
    assert.equal(next.requeueAfterMs, undefined);
  });

  it('the last allowed attempt failing says how many attempts were made', () => {
    const p = pipeline({ steps: [step('a', { retries: { limit: 1 } })] });
    const status = runningStatus({ a: { phase: 'Running', attempts: 2 } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [failedPod('a', 1), failedPod('a', 2, 1, 'again')] });
    assert.equal(next.status.phase, 'Failed');
    assert.equal(stepOf(next, 'a').message, 'container step exited with code 1: again after 2 attempts');
    assert.match(condition(next).message, /^step "a" failed: .*after 2 attempts$/);
  });
});

describe('planRun: timeouts', () => {
  it('a step Pod older than timeoutSeconds is deleted and the step retried with reason TimedOut', () => {
    const p = pipeline({ steps: [step('a', { timeoutSeconds: 60, retries: { limit: 1, backoffSeconds: 7 } })] });
    const status = runningStatus({ a: { phase: 'Running' } });
    const slow = stepPod('a', 1, 'Running', { status: { startTime: stamp(-61), initContainerStatuses: [runningStep(stamp(-61))] } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [slow] });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason], ['Retrying', Reasons.TimedOut]);
    assert.match(a.message ?? '', /exceeded its timeout of 60s/);
    assert.deepEqual(deleted(next), ['r1-a-1']);
    assert.equal(next.requeueAfterMs, 7000);
  });

  it('a step that times out with no retries left fails the run, its Pod deleted once', () => {
    const p = pipeline({ steps: [step('a', { timeoutSeconds: 60 }), step('b', { dependsOn: ['a'] })] });
    const status = runningStatus({ a: { phase: 'Running' }, b: { phase: 'Pending' } });
    const slow = stepPod('a', 1, 'Running', { status: { startTime: stamp(-60), initContainerStatuses: [runningStep(stamp(-60))] } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [slow] });
    assert.equal(next.status.phase, 'Failed');
    assert.deepEqual(phases(next), { a: 'Failed', b: 'Skipped' });
    assert.equal(stepOf(next, 'a').reason, Reasons.TimedOut);
    assert.match(condition(next).message, /^step "a" failed: exceeded its timeout of 60s$/);
    assert.deepEqual(deleted(next), ['r1-a-1']);
  });

  it('a step within its timeout asks to be looked at again when it expires', () => {
    const p = pipeline({ steps: [step('a', { timeoutSeconds: 60 })] });
    const status = runningStatus({ a: { phase: 'Running' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [stepPod('a', 1, 'Running', { status: { startTime: stamp(-10), initContainerStatuses: [runningStep(stamp(-10))] } })] });
    assert.equal(stepOf(next, 'a').phase, 'Running');
    assert.deepEqual(next.delete, []);
    assert.equal(next.requeueAfterMs, 50_000);
  });

  it('a Pod the kubelet ended with DeadlineExceeded fails the step with TimedOut', () => {
    const p = pipeline({ steps: [step('a', { timeoutSeconds: 60 })] });
    const status = runningStatus({ a: { phase: 'Running' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [stepPod('a', 1, 'Failed', { status: { reason: 'DeadlineExceeded' } })] });
    assert.equal(stepOf(next, 'a').reason, Reasons.TimedOut);
    assert.equal(next.status.phase, 'Failed');
  });

  it('the run times out: Failed with TimedOut, running steps Cancelled and their Pods deleted', () => {
    const p = pipeline({ steps: diamond(), timeoutSeconds: 3600 });
    const status = { ...runningStatus({ a: { phase: 'Succeeded' }, b: { phase: 'Running' }, c: { phase: 'Succeeded' }, d: { phase: 'Pending' } }), startedAt: stamp(-3600) };
    const pods = [succeededPod('a', 1), stepPod('b', 1, 'Running'), succeededPod('c', 1)];
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods });
    assert.equal(next.status.phase, 'Failed');
    const c = condition(next);
    assert.deepEqual([c.status, c.reason, c.message], ['False', Reasons.TimedOut, 'run exceeded its timeout of 3600s']);
    assert.deepEqual(phases(next), { a: 'Succeeded', b: 'Cancelled', c: 'Succeeded', d: 'Skipped' });
    assert.deepEqual(deleted(next), ['r1-b-1']);
    assert.deepEqual(created(next), []);
  });

  it("the run's own timeout overrides the pipeline's and sets the requeue", () => {
    const p = pipeline({ steps: [step('a')], timeoutSeconds: 10 });
    const status = { ...runningStatus({ a: { phase: 'Running' } }), startedAt: stamp(-100) };
    const next = plan({ pipeline: p, run: pipelineRun({ timeoutSeconds: 300, status }), pods: [stepPod('a', 1, 'Running')] });
    assert.equal(next.status.phase, 'Running');
    assert.equal(next.requeueAfterMs, 200_000);
  });
});

describe('planRun: cancel', () => {
  it('spec.cancel stops the run: Cancelled, Pods deleted, nothing created', () => {
    const p = pipeline({ steps: diamond() });
    const status = runningStatus({ a: { phase: 'Succeeded' }, b: { phase: 'Running' }, c: { phase: 'Retrying', retryAt: at(30).toISOString() }, d: { phase: 'Pending' } });
    const pods = [succeededPod('a', 1), stepPod('b', 1, 'Running'), failedPod('c', 1)];
    const next = plan({ pipeline: p, run: pipelineRun({ cancel: true, status }), pods });
    assert.equal(next.status.phase, 'Cancelled');
    assert.deepEqual(phases(next), { a: 'Succeeded', b: 'Cancelled', c: 'Cancelled', d: 'Skipped' });
    assert.equal(stepOf(next, 'c').retryAt, undefined);
    assert.deepEqual(deleted(next), ['r1-b-1']);
    assert.deepEqual(created(next), []);
    const c = condition(next);
    assert.deepEqual([c.status, c.reason], ['False', Reasons.Cancelled]);
    assert.equal(next.requeueAfterMs, undefined);
  });

  it('a run cancelled before its first reconcile starts nothing', () => {
    const next = plan({ pipeline: pipeline({ steps: diamond() }), run: pipelineRun({ cancel: true }) });
    assert.equal(next.status.phase, 'Cancelled');
    assert.deepEqual(created(next), []);
    assert.deepEqual(phases(next), { a: 'Skipped', b: 'Skipped', c: 'Skipped', d: 'Skipped' });
  });

  it('a run cancelled while its pipeline is missing is Cancelled', () => {
    const next = plan({ pipeline: undefined, run: pipelineRun({ cancel: true }) });
    assert.equal(next.status.phase, 'Cancelled');
    assert.equal(condition(next).reason, Reasons.Cancelled);
  });
});

describe('planRun: the run cannot start', () => {
  it('missing pipeline → Pending with PipelineNotFound', () => {
    const next = plan({ pipeline: undefined });
    assert.equal(next.status.phase, 'Pending');
    const c = condition(next);
    assert.deepEqual([c.status, c.reason], ['Unknown', Reasons.PipelineNotFound]);
    assert.equal(c.message, 'pipeline "train" not found in namespace "ml"');
    assert.deepEqual(created(next), []);
    assert.equal(next.status.finishedAt, undefined);
  });

  it('invalid pipeline → Failed with InvalidPipeline naming the problem', () => {
    const p = pipeline({ steps: [step('a', { dependsOn: ['b'] }), step('b', { dependsOn: ['a'] })] });
    const next = plan({ pipeline: p });
    assert.equal(next.status.phase, 'Failed');
    const c = condition(next);
    assert.deepEqual([c.status, c.reason], ['False', Reasons.InvalidPipeline]);
    assert.equal(c.message, 'pipeline "train" is invalid: dependency cycle: a → b → a');
    assert.deepEqual(created(next), []);
  });

  it('invalid parameters → Failed with InvalidParameters listing every problem', () => {
    const p = pipeline({ steps: [step('a', { parameters: ['epochs', 'dataset'] })],
      parameters: [{ name: 'epochs', type: 'int', default: 3 }, { name: 'dataset', type: 'string' }],
    });
    const next = plan({ pipeline: p, run: pipelineRun({ parameters: [{ name: 'epochs', value: 'many' }] }) });
    assert.equal(next.status.phase, 'Failed');
    const c = condition(next);
    assert.deepEqual([c.status, c.reason], ['False', Reasons.InvalidParameters]);
    assert.equal(c.message, 'parameter "epochs" (int): "many" is not an integer; parameter "dataset" is required');
    assert.deepEqual(created(next), []);
  });

  it('valid parameters are resolved into status and the plan', () => {
    const p = pipeline({ steps: [step('a', { parameters: ['epochs'] })], parameters: [{ name: 'epochs', type: 'int', default: 3 }, { name: 'lr', type: 'float', default: '0.1' }] });
    const next = plan({ pipeline: p, run: pipelineRun({ parameters: [{ name: 'epochs', value: '5' }] }) });
    const expected = [{ name: 'epochs', value: '5', source: 'run' }, { name: 'lr', value: '0.1', source: 'default' }];
    assert.deepEqual(next.status.parameters, expected);
    assert.deepEqual(next.parameters, expected);
  });
});

describe('planRun: the world disagrees with the status', () => {
  const p = pipeline({ steps: diamond() });

  it('adopts a Pod an earlier reconcile created but did not record', () => {
    // The first reconcile created r1-a-1, then crashed before writing status.
    const pods = [stepPod('a', 1, 'Running', { metadata: { creationTimestamp: stamp(-5) } })];
    const next = plan({ pipeline: p, pods });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.attempts, a.podName, a.startedAt], ['Running', 1, 'r1-a-1', stamp(-5)]);
    assert.deepEqual(created(next), []);
    assert.equal(next.status.phase, 'Running', 'a step runs, so the run does');
    assert.equal(next.status.startedAt, stamp(-5));
    assert.equal(condition(next).reason, Reasons.Running);
  });

  it('adopts a newer attempt than the status knows', () => {
    const status = runningStatus({ a: { phase: 'Retrying', retryAt: at(-1).toISOString() }, b: { phase: 'Pending' }, c: { phase: 'Pending' }, d: { phase: 'Pending' } });
    const pods = [failedPod('a', 1), stepPod('a', 2, 'Running')];
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.attempts, a.podName, a.retryAt], ['Running', 2, 'r1-a-2', undefined]);
    assert.deepEqual(created(next), []);
  });

  it('a Running step whose Pod is missing gets the same Pod name created again', () => {
    const status = runningStatus({ a: { phase: 'Running' }, b: { phase: 'Pending' }, c: { phase: 'Pending' }, d: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [] });
    assert.deepEqual(created(next), ['r1-a-1']);
    assert.equal(next.create[0]?.attempt, 1);
    assert.equal(stepOf(next, 'a').attempts, 1);
    assert.deepEqual(next.events, [], 'no second StepStarted');
  });

  it('planning twice from the same facts plans the same Pods (idempotent)', () => {
    const once = plan({ pipeline: p });
    const twice = plan({ pipeline: p });
    assert.deepEqual(created(once), created(twice));
    assert.deepEqual(once.status, twice.status);
  });

  it('a still-running Pod of an earlier attempt is deleted', () => {
    const status = runningStatus({ a: { phase: 'Running', attempts: 2 }, b: { phase: 'Pending' }, c: { phase: 'Pending' }, d: { phase: 'Pending' } });
    const next = plan({ pipeline: p, run: pipelineRun({ status }), pods: [stepPod('a', 1, 'Running'), stepPod('a', 2, 'Running')] });
    assert.deepEqual(deleted(next), ['r1-a-1']);
    assert.equal(stepOf(next, 'a').attempts, 2);
  });

  it('a Pod already being deleted is not deleted again', () => {
    const p2 = pipeline({ steps: [step('a')] });
    const status = runningStatus({ a: { phase: 'Running' } });
    const dying = stepPod('a', 1, 'Running', { metadata: { deletionTimestamp: stamp(-1) } });
    const next = plan({ pipeline: p2, run: pipelineRun({ cancel: true, status }), pods: [dying] });
    assert.equal(next.status.phase, 'Cancelled');
    assert.deepEqual(next.delete, []);
  });

  it('a finished run only deletes its still-active Pods', () => {
    const pods = [succeededPod('a', 1), failedPod('b', 1), stepPod('c', 1, 'Running'), stepPod('c', 2, 'Pending', { metadata: { deletionTimestamp: stamp(-1) } })];
    assert.deepEqual(planFinishedRun(pods).map((x) => x.metadata.name), ['r1-c-1']);
  });
});

describe('foldPass: Pods the API server rejects', () => {
  const fold = (planned: RunPlan, rejected: Map<string, string>) =>
    foldPass(planned, { pods: { launches: planned.create, created: [], rejected } }, { pods: [], now: NOW });

  it('fail the step with PodRejected, without retry, and the run with it', () => {
    const p = pipeline({ steps: [step('a', { retries: { limit: 3 } }), step('b')] });
    const planned = plan({ pipeline: p });
    const next = fold(planned, new Map([['r1-a-1', 'Pod rejected by the API server: exceeded quota']]));
    const a = next.status.steps!.find((s) => s.name === 'a')!;
    assert.deepEqual([a.phase, a.reason, a.retryAt], ['Failed', Reasons.PodRejected, undefined]);
    assert.equal(a.message, 'Pod rejected by the API server: exceeded quota');
    assert.equal(next.status.phase, 'Failed');
    assert.deepEqual(next.status.steps!.map((s) => s.phase), ['Failed', 'Cancelled'], 'b started in the same pass and is stopped');
    const c = findCondition(next.status.conditions, CONDITION_SUCCEEDED);
    assert.match(c?.message ?? '', /^step "a" failed: Pod rejected by the API server: exceeded quota$/);
    assert.deepEqual(next.events.map((e) => e.reason), ['StepStarted', 'StepFailed', 'RunFailed'], 'the refused step is not announced as started');
    assert.equal(next.events[0]?.message, 'step "b" started (attempt 1)');
  });

  it('fail a Running step whose missing Pod is rejected when created again', () => {
    const p = pipeline({ steps: [step('a', { retries: { limit: 3 } })] });
    const status = runningStatus({ a: { phase: 'Running' } });
    const next = fold(plan({ pipeline: p, run: pipelineRun({ status }) }), new Map([['r1-a-1', 'denied']]));
    const a = next.status.steps!.find((s) => s.name === 'a')!;
    assert.deepEqual([a.phase, a.reason], ['Failed', Reasons.PodRejected]);
    assert.equal(next.status.phase, 'Failed');
  });

  it('delete the Pods created in the same pass', () => {
    const p = pipeline({ steps: [step('a'), step('b')] });
    const planned = plan({ pipeline: p });
    const madeB = stepPod('b', 1, 'Pending');
    const next = foldPass(planned, { pods: { launches: planned.create, created: [madeB], rejected: new Map([['r1-a-1', 'denied']]) } }, { pods: [], now: NOW });
    assert.deepEqual(next.delete.map((x) => x.metadata.name), ['r1-b-1']);
  });
});

describe('planRun: conditions', () => {
  it("lastTransitionTime does not move while the condition's status stays the same", () => {
    const p = pipeline({ steps: diamond() });
    const first = plan({ pipeline: p });
    const t0 = condition(first).lastTransitionTime;
    assert.equal(t0, '2030-01-01T12:00:00Z');

    // Later, with another message (b and c running): still Unknown, the time stays.
    const second = plan({ pipeline: p, run: withStatus(pipelineRun(), first.status), pods: [succeededPod('a', 1)], now: at(600) });
    assert.equal(condition(second).message, 'running: b, c');
    assert.equal(condition(second).lastTransitionTime, t0);

    // Nothing changed: the status is equal, so no write is needed.
    const third = plan({ pipeline: p, run: withStatus(pipelineRun(), second.status), pods: [succeededPod('a', 1), stepPod('b', 1, 'Running'), stepPod('c', 1, 'Running')], now: at(900) });
    assert.deepEqual(third.status, second.status);

    // The status flips to False: the time moves.
    const fourth = plan({ pipeline: p, run: withStatus(pipelineRun(), third.status), pods: [succeededPod('a', 1), failedPod('b', 1), stepPod('c', 1, 'Running')], now: at(1200) });
    assert.equal(condition(fourth).status, 'False');
    assert.equal(condition(fourth).lastTransitionTime, stamp(1200));
  });
});

describe('planRun: size', () => {
  // prepare → 198 shards → aggregate: the largest pipeline the CRD allows.
  const shards = Array.from({ length: MAX_STEPS - 2 }, (_, i) => `train-shard-${String(i).padStart(3, '0')}`);
  const fanOut = pipeline({ steps: [step('prepare'), ...shards.map((n) => step(n, { dependsOn: ['prepare'] })), step('aggregate', { dependsOn: shards })] });
  const run = (status?: PipelineRunStatus): PipelineRun => pipelineRun({ status, name: 'nightly-training-run-2030-01-01' });

  it('a 200-step fan-out keeps its status small while running', () => {
    assert.equal(fanOut.spec.steps.length, 200);
    const first = plan({ run: run(), pipeline: fanOut, pods: [], now: NOW });
    const pods: Pod[] = [succeededPod('prepare', 1)];
    const second = plan({ run: run(first.status), pipeline: fanOut, pods, now: at(60) });
    assert.equal(second.create.length, 198);
    assert.equal(second.status.steps?.length, 200);
    const size = JSON.stringify(second.status).length;
    assert.ok(size < 64 * 1024, `status is ${size} bytes`);
  });

  it('a 200-step run in which every step failed with a long message stays far below etcd limits', () => {
    const names = Array.from({ length: MAX_STEPS }, (_, i) => `train-shard-${String(i).padStart(3, '0')}`);
    const steps = names.map((n) => step(n, { retries: { limit: 1 } }));
    const p = pipeline({ steps });
    const status = runningStatus(Object.fromEntries(names.map((n) => [n, { phase: 'Running' as const }])));
    const pods = names.map((n) => failedPod(n, 1, 1, 'x'.repeat(10_000)));
    const next = plan({ run: pipelineRun({ status }), pipeline: p, pods, now: NOW });
    assert.ok(next.status.steps?.every((s) => s.phase === 'Retrying'));
    const size = JSON.stringify(next.status).length;
    assert.ok(size < 256 * 1024, `status is ${size} bytes`);
  });
});

describe('collapseEvents', () => {
  const started = (step: string): RunEvent => ({ type: 'Normal', reason: 'StepStarted', message: `step "${step}" started (attempt 1)` });
  const cases: Array<[string, RunEvent[], RunEvent[]]> = [
    ['nothing stays nothing', [], []],
    ['a single event is kept as it is', [started('a')], [started('a')]],
    [
      'events of one reason become one, counted and naming each step, in order',
      [started('a'), started('b')],
      [{ type: 'Normal', reason: 'StepStarted', message: '2 steps: step "a" started (attempt 1); step "b" started (attempt 1)' }],
    ],
    [
      'reasons stay apart, in the order they first came',
      [{ type: 'Normal', reason: 'StepSucceeded', message: 'step "a" succeeded' }, started('b'), started('c')],
      [
        { type: 'Normal', reason: 'StepSucceeded', message: 'step "a" succeeded' },
        { type: 'Normal', reason: 'StepStarted', message: '2 steps: step "b" started (attempt 1); step "c" started (attempt 1)' },
      ],
    ],
  ];
  for (const [name, events, expected] of cases) it(name, () => assert.deepEqual(collapseEvents(events), expected));

  it('a 199-step fan-out starts with one Event whose note fits the API limit', () => {
    const out = collapseEvents(Array.from({ length: 199 }, (_, i) => started(`f${String(i).padStart(3, '0')}`)));
    assert.equal(out.length, 1);
    assert.ok(out[0]!.message.startsWith('199 steps: step "f000" started'));
    assert.ok(out[0]!.message.length <= 1024);
  });
});

describe('planRun: a succeeded step whose report was refused', () => {
  it('fails the step with InvalidStepReport and the reason, without retrying', () => {
    const p = pipeline({ steps: [step('a', { outputs: [{ name: 'data', type: 'dataset' }], retries: { limit: 2 } })] });
    const first = plan({ pipeline: p, run: pipelineRun() });
    const pod = succeededPod('a', 1);
    const refused = 'the step\'s report was refused: output "data" does not name an object of namespace "ml" in the artifact store';
    const next = plan({ pipeline: p, run: withStatus(pipelineRun(), first.status), pods: [pod], reports: new Map([[pod.metadata.name, { refused }]]) });
    assert.equal(stepOf(next, 'a').phase, 'Failed');
    assert.equal(stepOf(next, 'a').reason, 'InvalidStepReport');
    assert.equal(stepOf(next, 'a').message, refused);
    assert.deepEqual(created(next), []);
  });
});
