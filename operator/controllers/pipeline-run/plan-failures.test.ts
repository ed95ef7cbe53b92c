// The planner on failed attempts by cause (pod-status.ts → retry-policy.ts → transitions.ts):
// free retries of infrastructure losses, retries.policy, Pods stuck Pending, and step timeouts
// counted from the step container's start.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { Pod } from '../../kube/pod.ts';
import { RUN_NAME, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import type { FailureSettings } from './retry-policy.ts';
import { at, created, deleted, plan, runningStep, stamp, stepOf, stepPod, stored, terminated } from './testing.ts';

/** Step `a` Running its attempt `attempts` (with what earlier attempts left), as a previous pass wrote it. */
function running(extra: Partial<StepStatus> = {}): PipelineRunStatus {
  const attempts = extra.attempts ?? 1;
  return {
    phase: 'Running',
    startedAt: stamp(-300),
    steps: [{ name: 'a', phase: 'Running', attempts, podName: `${RUN_NAME}-a-${attempts}`, startedAt: stamp(-300), ...extra }],
  };
}

const only = (extra: Partial<StepSpec>) => pipeline({ steps: [step('a', extra)] });

const evicted = (attempt: number): Pod => stepPod('a', attempt, 'Failed', {
  status: {
    reason: 'Evicted', message: 'The node was low on resource: ephemeral-storage.',
    conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'TerminationByKubelet', lastTransitionTime: stamp(-1) }],
    initContainerStatuses: [terminated(137, { reason: 'Error' })],
  },
});
const oomKilled = (attempt: number): Pod =>
  stepPod('a', attempt, 'Failed', { status: { initContainerStatuses: [terminated(137, { reason: 'OOMKilled' })] } });

const settings = (extra: Partial<FailureSettings> = {}): FailureSettings =>
  ({ imagePullTimeoutSeconds: 300, unschedulableTimeoutSeconds: 600, maxInfrastructureRetries: 3, ...extra });

describe('planRun: infrastructure losses', () => {
  it('an evicted attempt is retried without using retries.limit, and counted', () => {
    const next = plan({ pipeline: only({ retries: { limit: 0, backoffSeconds: 4 } }), run: pipelineRun({ status: running() }), pods: [evicted(1)] });
    const a = stored(stepOf(next, 'a'));
    assert.deepEqual([a.phase, a.reason, a.cause, a.infrastructureRetries, a.exitCode], ['Retrying', Reasons.Evicted, 'Evicted', 1, undefined]);
    assert.equal(a.retryAt, at(4).toISOString());
    assert.equal(a.message, 'attempt 1 The node was low on resource: ephemeral-storage.');
    assert.equal(next.requeueAfterMs, 4000);
    assert.match(next.events[0]?.message ?? '', /retrying at .* \(an infrastructure loss: retries\.limit not used\)$/);
  });

  it('the next attempt forgets the cause and keeps the count', () => {
    const status = running({ phase: 'Retrying', retryAt: at(-1).toISOString(), reason: Reasons.Evicted, cause: 'Evicted', infrastructureRetries: 1 });
    const next = plan({ pipeline: only({ retries: { limit: 0 } }), run: pipelineRun({ status }), pods: [evicted(1)] });
    assert.deepEqual(created(next), ['r1-a-2']);
    const a = stored(stepOf(next, 'a'));
    assert.deepEqual([a.phase, a.attempts, a.cause, a.reason, a.infrastructureRetries], ['Running', 2, undefined, undefined, 1]);
  });

  it('past --max-infrastructure-retries an eviction is one more failure: limit 0 fails the step', () => {
    const status = running({ attempts: 3, infrastructureRetries: 2 });
    const pods = [evicted(1), evicted(2), evicted(3)];
    const next = plan({ pipeline: only({ retries: { limit: 0 } }), run: pipelineRun({ status }), pods, failureSettings: settings({ maxInfrastructureRetries: 2 }) });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.cause, a.infrastructureRetries], ['Failed', 'Evicted', 2]);
    assert.equal(next.status.phase, 'Failed');
    const failed = next.events.find((e) => e.reason === 'StepFailed');
    assert.match(failed?.message ?? '', /\(no retries allowed \(after 2 free retries of infrastructure losses\)\)$/);
  });
});

describe('planRun: retries.policy', () => {
  it('OnError retries an OOMKilled step, recording its cause and exit code', () => {
    const next = plan({ pipeline: only({ retries: { limit: 1, policy: 'OnError', backoffSeconds: 5 } }), run: pipelineRun({ status: running() }), pods: [oomKilled(1)] });
    const a = stored(stepOf(next, 'a'));
    assert.deepEqual([a.phase, a.reason, a.cause, a.exitCode, a.infrastructureRetries], ['Retrying', Reasons.OOMKilled, 'OOMKilled', 137, undefined]);
    assert.equal(next.requeueAfterMs, 5000);
  });

  it('OnInfrastructure does not retry an OOMKilled step, and the Event says why', () => {
    const next = plan({ pipeline: only({ retries: { limit: 1, policy: 'OnInfrastructure' } }), run: pipelineRun({ status: running() }), pods: [oomKilled(1)] });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason, a.cause, a.exitCode, a.attempts], ['Failed', Reasons.OOMKilled, 'OOMKilled', 137, 1]);
    assert.equal(a.message, 'container step ran out of memory (OOMKilled, exit code 137)');
    assert.equal(next.status.phase, 'Failed');
    const failed = next.events.find((e) => e.reason === 'StepFailed');
    assert.match(failed?.message ?? '', /\(retries\.policy OnInfrastructure does not retry OOMKilled\)$/);
  });

  it('factor multiplies the backoff', () => {
    const status = running({ attempts: 3 });
    const next = plan({ pipeline: only({ retries: { limit: 5, backoffSeconds: 2, factor: 3 } }), run: pipelineRun({ status }), pods: [oomKilled(1), oomKilled(2), oomKilled(3)] });
    assert.equal(stepOf(next, 'a').retryAt, at(18).toISOString());
  });
});

describe('planRun: Pods stuck Pending', () => {
  const scheduled = { type: 'PodScheduled', status: 'True', lastTransitionTime: stamp(-100) };
  const pulling = stepPod('a', 1, 'Pending', {
    metadata: { creationTimestamp: stamp(-101) },
    status: {
      startTime: stamp(-100), conditions: [scheduled],
      initContainerStatuses: [terminated(0, { name: 'fetch-inputs', finishedAt: stamp(-90) }), {
        name: 'step', image: 'registry.example/train@sha256:0', imageID: '', ready: false, restartCount: 0,
        state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.example/train@sha256:0"' } },
      }],
    },
  });
  const unschedulable = stepPod('a', 1, 'Pending', {
    status: { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available.', lastTransitionTime: stamp(-100) }] },
  });

  it('a Pod pulling in vain stays Running until the timeout, and wakes the run then', () => {
    const next = plan({ pipeline: only({ retries: { limit: 3 } }), run: pipelineRun({ status: running() }), pods: [pulling], failureSettings: settings({ imagePullTimeoutSeconds: 120 }) });
    assert.equal(stepOf(next, 'a').phase, 'Running');
    assert.equal(next.requeueAfterMs, 30_000, '120 s from the end of fetch-inputs, 90 s ago');
    assert.deepEqual(deleted(next), []);
  });

  it('then the step fails with ImagePullFailed, is never retried, and its Pod is deleted', () => {
    const next = plan({ pipeline: only({ retries: { limit: 3 } }), run: pipelineRun({ status: running() }), pods: [pulling], failureSettings: settings({ imagePullTimeoutSeconds: 90 }) });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason, a.cause, a.attempts], ['Failed', Reasons.ImagePullFailed, 'ImagePullFailed', 1]);
    assert.equal(a.finishedAt, stamp(0), 'the attempt ended when the planner gave up on it');
    assert.match(a.message ?? '', /^container step could not pull its image "registry\.example\/train@sha256:0" for 90s \(ImagePullBackOff\)/);
    assert.deepEqual(deleted(next), ['r1-a-1']);
    assert.equal(next.status.phase, 'Failed');
  });

  it('an unschedulable Pod fails its step after the unschedulable timeout (600 s by default)', () => {
    const waiting = plan({ pipeline: only({ retries: { limit: 3 } }), run: pipelineRun({ status: running() }), pods: [unschedulable] });
    assert.equal(stepOf(waiting, 'a').phase, 'Running');
    assert.equal(waiting.requeueAfterMs, 500_000);
    const next = plan({ pipeline: only({ retries: { limit: 3 } }), run: pipelineRun({ status: running() }), pods: [unschedulable], failureSettings: settings({ unschedulableTimeoutSeconds: 100 }) });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason, a.cause, a.message], ['Failed', Reasons.Unschedulable, 'Unschedulable', 'no node could run the Pod for 100s: 0/3 nodes are available.']);
    assert.deepEqual(deleted(next), ['r1-a-1']);
  });
});

describe("planRun: a step's timeout counts its own container only", () => {
  it('image pulls and input downloads do not count: timed from the step container start', () => {
    const pod = stepPod('a', 1, 'Running', { status: { startTime: stamp(-1000), initContainerStatuses: [terminated(0, { name: 'fetch-inputs', finishedAt: stamp(-11) }), runningStep(stamp(-10))] } });
    const next = plan({ pipeline: only({ timeoutSeconds: 60 }), run: pipelineRun({ status: running() }), pods: [pod] });
    assert.equal(stepOf(next, 'a').phase, 'Running');
    assert.equal(next.requeueAfterMs, 50_000);
  });

  it('before the step container runs there is no deadline of the planner (the kubelet has its backstop)', () => {
    const pod = stepPod('a', 1, 'Pending', { status: { startTime: stamp(-1000), initContainerStatuses: [{ ...runningStep(stamp(-1000)), name: 'fetch-inputs' }] } });
    const next = plan({ pipeline: only({ timeoutSeconds: 60 }), run: pipelineRun({ status: running() }), pods: [pod] });
    assert.equal(stepOf(next, 'a').phase, 'Running');
    assert.equal(next.requeueAfterMs, undefined);
  });

  it('a step past its timeout fails with cause DeadlineExceeded and its Pod is deleted', () => {
    const pod = stepPod('a', 1, 'Running', { status: { startTime: stamp(-1000), initContainerStatuses: [runningStep(stamp(-60))] } });
    const next = plan({ pipeline: only({ timeoutSeconds: 60 }), run: pipelineRun({ status: running() }), pods: [pod] });
    const a = stepOf(next, 'a');
    assert.deepEqual([a.phase, a.reason, a.cause, a.message], ['Failed', Reasons.TimedOut, 'DeadlineExceeded', 'exceeded its timeout of 60s']);
    assert.deepEqual(deleted(next), ['r1-a-1']);
  });

  it('a step without a timeout gets --default-step-timeout-seconds', () => {
    const pod = stepPod('a', 1, 'Running', { status: { initContainerStatuses: [runningStep(stamp(-100))] } });
    const next = plan({ pipeline: only({}), run: pipelineRun({ status: running() }), pods: [pod], failureSettings: settings({ defaultStepTimeoutSeconds: 100 }) });
    assert.deepEqual([stepOf(next, 'a').reason, stepOf(next, 'a').cause], [Reasons.TimedOut, 'DeadlineExceeded']);
    const within = plan({ pipeline: only({}), run: pipelineRun({ status: running() }), pods: [pod], failureSettings: settings({ defaultStepTimeoutSeconds: 160 }) });
    assert.equal(within.requeueAfterMs, 60_000);
  });

  it('a timed-out attempt is retried under Always, not under OnError', () => {
    const pod = stepPod('a', 1, 'Running', { status: { initContainerStatuses: [runningStep(stamp(-60))] } });
    const always = plan({ pipeline: only({ timeoutSeconds: 60, retries: { limit: 1 } }), run: pipelineRun({ status: running() }), pods: [pod] });
    assert.deepEqual([stepOf(always, 'a').phase, stepOf(always, 'a').cause], ['Retrying', 'DeadlineExceeded']);
    const onError = plan({ pipeline: only({ timeoutSeconds: 60, retries: { limit: 1, policy: 'OnError' } }), run: pipelineRun({ status: running() }), pods: [pod] });
    assert.equal(stepOf(onError, 'a').phase, 'Failed');
  });
});
