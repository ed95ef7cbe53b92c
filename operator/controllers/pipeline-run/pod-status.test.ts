import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import { StepStatusSchema } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../kube/pod.ts';
import { FAILURE_CAUSES, REASON_OF_CAUSE, attemptOutcome, isActive, podForCache, truncate, type AttemptOutcome, type FailureCause } from './pod-status.ts';
import { stamp, stepPod, terminated, type PodExtra } from './testing.ts';

describe('attemptOutcome', () => {
  const cases: Array<[string, Pod, AttemptOutcome]> = [
    [
      'Succeeded',
      stepPod('a', 1, 'Succeeded', { status: { startTime: stamp(-30), containerStatuses: [terminated(0, { finishedAt: stamp(-2) })] } }),
      { state: 'succeeded', startedAt: stamp(-30), finishedAt: stamp(-2) },
    ],
    [
      'Failed with exit code and termination message',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), containerStatuses: [terminated(3, { message: '  loss is NaN\n', finishedAt: stamp(-1) })] } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-1), reason: Reasons.Failed, message: 'container step exited with code 3: loss is NaN', cause: 'Error', exitCode: 3 },
    ],
    [
      'Failed without a message uses the container reason',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), containerStatuses: [terminated(1, { reason: 'Error', finishedAt: stamp(-1) })] } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-1), reason: Reasons.Failed, message: 'container step exited with code 1: Error', cause: 'Error', exitCode: 1 },
    ],
    [
      'Failed in an init container names that container',
      stepPod('a', 1, 'Failed', {
        status: { startTime: stamp(-30), initContainerStatuses: [terminated(2, { name: 'fetch-inputs', message: 'no such object', finishedAt: stamp(-5) })] },
      }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-5), reason: Reasons.Failed, message: 'container fetch-inputs exited with code 2: no such object', cause: 'AgentFailed', exitCode: 2 },
    ],
    [
      'Failed with DeadlineExceeded is TimedOut',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: Reasons.TimedOut, message: 'exceeded its timeout', cause: 'DeadlineExceeded' },
    ],
    [
      'Failed without container statuses uses the Pod reason and message',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), reason: 'OutOfcpu', message: 'Pod was rejected: Node didn\'t have enough resource: cpu' } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: 'OutOfcpu', message: 'Pod was rejected: Node didn\'t have enough resource: cpu', cause: 'Error' },
    ],
    [
      'Failed with nothing to say',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30) } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: Reasons.Failed, message: 'pod failed', cause: 'Error' },
    ],
    ['Pending is active, started when created', stepPod('a', 1, 'Pending'), { state: 'active', startedAt: stamp(-60) }],
    ['Running is active, started at startTime', stepPod('a', 1, 'Running', { status: { startTime: stamp(-7) } }), { state: 'active', startedAt: stamp(-7) }],
  ];
  for (const [name, pod, expected] of cases) {
    it(name, () => assert.deepEqual(attemptOutcome(pod), expected));
  }

  it('a Pod without status is active', () => {
    const pod: Pod = { ...stepPod('a', 1, 'Pending'), status: undefined };
    assert.equal(attemptOutcome(pod).state, 'active');
  });

  it('truncates a long termination message to 512 characters', () => {
    const pod = stepPod('a', 1, 'Failed', { status: { containerStatuses: [terminated(1, { message: 'e'.repeat(5000) })] } });
    const outcome = attemptOutcome(pod);
    assert.equal(outcome.state, 'failed');
    if (outcome.state !== 'failed') return;
    assert.equal(outcome.message.length, 512);
    assert.ok(outcome.message.endsWith('…'));
    assert.ok(outcome.message.startsWith('container step exited with code 1: eee'));
  });
});

describe('attemptOutcome: the cause of a failed attempt', () => {
  const disruption = (reason: string, message = `${reason} says so`) =>
    ({ type: 'DisruptionTarget', status: 'True', reason, message, lastTransitionTime: stamp(-3) });
  const failed = (status: Partial<IPodStatus>, metadata: PodExtra['metadata'] = {}) => stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), ...status }, metadata });
  const killed = terminated(137, { reason: 'Error' });
  const cases: Array<[string, Pod, { cause: FailureCause; reason: string; exitCode?: number; message?: string | RegExp }]> = [
    ['a non-zero exit of the step', failed({ initContainerStatuses: [terminated(0, { name: 'fetch-inputs' }), terminated(3, { message: 'bad' })] }),
      { cause: 'Error', reason: Reasons.Failed, exitCode: 3, message: 'container step exited with code 3: bad' }],
    ['the step OOMKilled', failed({ initContainerStatuses: [terminated(137, { reason: 'OOMKilled' })] }),
      { cause: 'OOMKilled', reason: Reasons.OOMKilled, exitCode: 137, message: 'container step ran out of memory (OOMKilled, exit code 137)' }],
    ['the step OOMKilled keeps its last log lines', failed({ initContainerStatuses: [terminated(137, { reason: 'OOMKilled', message: 'allocating 8 GiB' })] }),
      { cause: 'OOMKilled', reason: Reasons.OOMKilled, exitCode: 137, message: 'container step ran out of memory (OOMKilled, exit code 137): allocating 8 GiB' }],
    ['fetch-inputs failed', failed({ initContainerStatuses: [terminated(2, { name: 'fetch-inputs', message: 'digest mismatch' })] }),
      { cause: 'AgentFailed', reason: Reasons.Failed, exitCode: 2, message: 'container fetch-inputs exited with code 2: digest mismatch' }],
    ['publish-outputs failed after the step succeeded', failed({ initContainerStatuses: [terminated(0)], containerStatuses: [terminated(1, { name: 'publish-outputs', message: 'HTTP 403' })] }),
      { cause: 'AgentFailed', reason: Reasons.Failed, exitCode: 1, message: 'container publish-outputs exited with code 1: HTTP 403' }],
    ['publish-outputs OOMKilled is the agent failing, not the step', failed({ initContainerStatuses: [terminated(0)], containerStatuses: [terminated(137, { name: 'publish-outputs', reason: 'OOMKilled' })] }),
      { cause: 'AgentFailed', reason: Reasons.Failed, exitCode: 137 }],
    ['the kubelet evicted it (ephemeral storage)', failed({
      reason: 'Evicted', message: 'Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.',
      conditions: [disruption('TerminationByKubelet')], initContainerStatuses: [killed],
    }), { cause: 'Evicted', reason: Reasons.Evicted, message: 'Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.' }],
    ['the kubelet evicted it (memory pressure), no condition', failed({ reason: 'Evicted', message: 'The node was low on resource: memory.' }),
      { cause: 'Evicted', reason: Reasons.Evicted, message: 'The node was low on resource: memory.' }],
    ['kubectl drain evicted it: its killed step is no exit of its own', failed({ conditions: [disruption('EvictionByEvictionAPI', 'Eviction API: evicting')], initContainerStatuses: [terminated(143, { reason: 'Error' })] }),
      { cause: 'Evicted', reason: Reasons.Evicted, message: 'Eviction API: evicting' }],
    ['the scheduler preempted it', failed({ conditions: [disruption('PreemptionByScheduler', 'high-priority/train: preempting to accommodate a higher priority pod')], initContainerStatuses: [killed] }),
      { cause: 'Preempted', reason: Reasons.Preempted, message: 'high-priority/train: preempting to accommodate a higher priority pod' }],
    ['the kubelet preempted it for a critical Pod', failed({ reason: 'Preempting', message: 'Preempted in order to admit critical pod', conditions: [disruption('TerminationByKubelet')] }),
      { cause: 'Preempted', reason: Reasons.Preempted, message: 'Preempted in order to admit critical pod' }],
    ['the taint manager deleted it from an unreachable node', failed({ conditions: [disruption('DeletionByTaintManager', 'Taint manager: deleting due to NoExecute taint')] }),
      { cause: 'NodeLost', reason: Reasons.NodeLost, message: 'Taint manager: deleting due to NoExecute taint' }],
    ['the Pod GC failed it after its node went away', failed({ conditions: [disruption('DeletionByPodGC', 'PodGC: node no longer exists')] }),
      { cause: 'NodeLost', reason: Reasons.NodeLost, message: 'PodGC: node no longer exists' }],
    ['the node shut down', failed({
      reason: 'Terminated', message: 'Pod was terminated in response to imminent node shutdown.', conditions: [disruption('TerminationByKubelet')], initContainerStatuses: [killed],
    }), { cause: 'NodeLost', reason: Reasons.NodeLost, message: 'Pod was terminated in response to imminent node shutdown.' }],
    ['a node shutting down refused it', failed({ reason: 'NodeShutdown', message: 'Pod was rejected as the node is shutting down.' }),
      { cause: 'NodeLost', reason: Reasons.NodeLost }],
    ['the node was lost', failed({ reason: 'NodeLost', message: 'Node n1 which was running pod r1-a-1 is unresponsive' }),
      { cause: 'NodeLost', reason: Reasons.NodeLost, message: 'Node n1 which was running pod r1-a-1 is unresponsive' }],
    ['a Running Pod being deleted off a lost node has failed already', stepPod('a', 1, 'Running', {
      status: { conditions: [disruption('DeletionByTaintManager')] }, metadata: { deletionTimestamp: stamp(-1) },
    }), { cause: 'NodeLost', reason: Reasons.NodeLost }],
    ['a Running Pod being deleted by its preemptor has failed already', stepPod('a', 1, 'Running', {
      status: { conditions: [disruption('PreemptionByScheduler')] }, metadata: { deletionTimestamp: stamp(-1) },
    }), { cause: 'Preempted', reason: Reasons.Preempted }],
    ['the kubelet ended it at activeDeadlineSeconds', failed({ reason: 'DeadlineExceeded', initContainerStatuses: [killed] }),
      { cause: 'DeadlineExceeded', reason: Reasons.TimedOut, message: 'exceeded its timeout' }],
  ];
  for (const [name, pod, expected] of cases) {
    it(`${name} → ${expected.cause}`, () => {
      const outcome = attemptOutcome(pod);
      assert.equal(outcome.state, 'failed');
      if (outcome.state !== 'failed') return;
      assert.equal(outcome.cause, expected.cause);
      assert.equal(outcome.reason, expected.reason);
      assert.equal(outcome.exitCode, expected.exitCode);
      if (typeof expected.message === 'string') assert.equal(outcome.message, expected.message);
      else if (expected.message) assert.match(outcome.message, expected.message);
    });
  }

  it('a Running Pod with a DisruptionTarget but no deletion yet is still active', () => {
    const pod = stepPod('a', 1, 'Running', { status: { conditions: [disruption('PreemptionByScheduler')] } });
    assert.equal(attemptOutcome(pod).state, 'active');
  });

  it('a Pod we deleted ourselves (no DisruptionTarget) is active until it ends', () => {
    const pod = stepPod('a', 1, 'Running', { metadata: { deletionTimestamp: stamp(-1) } });
    assert.equal(attemptOutcome(pod).state, 'active');
  });

  it('every cause has a reason, and the list is the schema\'s enum', () => {
    assert.deepEqual(Object.keys(REASON_OF_CAUSE).sort(), [...FAILURE_CAUSES].sort());
    assert.deepEqual(
      [...((StepStatusSchema.properties.cause as unknown as { enum: string[] }).enum)].sort(),
      [...FAILURE_CAUSES].sort(),
    );
  });
});

describe('attemptOutcome: a Pod stuck Pending', () => {
  const timeouts = { imagePullTimeoutSeconds: 300, unschedulableTimeoutSeconds: 600 };
  const at = (seconds: number) => ({ now: new Date(Date.parse(stamp(seconds))), timeouts });
  const waiting = (name: string, reason: string, message?: string) =>
    ({ name, image: `${name}-image@sha256:${'e'.repeat(64)}`, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason, ...(message ? { message } : {}) } } });
  const scheduledAt = (seconds: number) => ({ type: 'PodScheduled', status: 'True', lastTransitionTime: stamp(seconds) });

  // The step's image is pulled once fetch-inputs ended (init containers run in turn): 100 s ago.
  const pulling = (reason: string) => stepPod('a', 1, 'Pending', {
    metadata: { creationTimestamp: stamp(-202) },
    status: {
      startTime: stamp(-200), conditions: [scheduledAt(-201)],
      initContainerStatuses: [terminated(0, { name: 'fetch-inputs', finishedAt: stamp(-100) }), waiting('step', reason, 'Back-off pulling image "step-image"')],
      containerStatuses: [waiting('publish-outputs', 'PodInitializing')],
    },
  });
  const unschedulable = stepPod('a', 1, 'Pending', {
    status: { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.', lastTransitionTime: stamp(-500) }] },
  });

  for (const reason of ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']) {
    it(`${reason}: active until the image pull timeout, measured from fetch-inputs' end`, () => {
      assert.deepEqual(attemptOutcome(pulling(reason), at(0)), { state: 'active', startedAt: stamp(-200), failsAt: at(200).now.toISOString() });
      const outcome = attemptOutcome(pulling(reason), at(200));
      assert.equal(outcome.state, 'failed');
      if (outcome.state !== 'failed') return;
      assert.deepEqual([outcome.cause, outcome.reason, outcome.exitCode], ['ImagePullFailed', Reasons.ImagePullFailed, undefined]);
      assert.equal(outcome.finishedAt, undefined, 'it ends when the operator gives up, not when fetch-inputs ended');
      assert.equal(outcome.message, `container step could not pull its image "step-image@sha256:${'e'.repeat(64)}" for 300s (${reason}): Back-off pulling image "step-image"`);
    });
  }

  it('the agent image that cannot be pulled is measured from the Pod start', () => {
    const pod = stepPod('a', 1, 'Pending', { metadata: { creationTimestamp: stamp(-42) }, status: { startTime: stamp(-40), conditions: [scheduledAt(-41)], initContainerStatuses: [waiting('fetch-inputs', 'ImagePullBackOff')] } });
    assert.equal(attemptOutcome(pod, at(0)).state, 'active');
    const outcome = attemptOutcome(pod, at(260));
    assert.deepEqual(outcome.state === 'failed' ? [outcome.cause, outcome.message] : [], ['ImagePullFailed', `container fetch-inputs could not pull its image "fetch-inputs-image@sha256:${'e'.repeat(64)}" for 300s (ImagePullBackOff)`]);
  });

  it('Unschedulable: active until the unschedulable timeout, measured from the condition', () => {
    assert.deepEqual(attemptOutcome(unschedulable, at(0)), { state: 'active', startedAt: stamp(-60), failsAt: at(100).now.toISOString() });
    const outcome = attemptOutcome(unschedulable, at(100));
    assert.equal(outcome.state, 'failed');
    if (outcome.state !== 'failed') return;
    assert.deepEqual([outcome.cause, outcome.reason], ['Unschedulable', Reasons.Unschedulable]);
    assert.equal(outcome.message, 'no node could run the Pod for 600s: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.');
  });

  it('without the clock and settings a stuck Pod stays active (gather.ts asks only for succeeded Pods)', () => {
    assert.equal(attemptOutcome(pulling('ImagePullBackOff')).state, 'active');
    assert.equal(attemptOutcome(unschedulable).state, 'active');
  });

  it('a Pod initializing normally is not stuck', () => {
    const pod = stepPod('a', 1, 'Pending', { status: { startTime: stamp(-900), initContainerStatuses: [waiting('fetch-inputs', 'PodInitializing')] } });
    assert.deepEqual(attemptOutcome(pod, at(0)), { state: 'active', startedAt: stamp(-900) });
  });

  it('a running step says since when: its timeout counts from there, not from the Pod start', () => {
    const pod = stepPod('a', 1, 'Pending', {
      status: {
        startTime: stamp(-900),
        initContainerStatuses: [terminated(0, { name: 'fetch-inputs', finishedAt: stamp(-20) }), { ...waiting('step', 'x'), state: { running: { startedAt: stamp(-15) } } }],
      },
    });
    assert.deepEqual(attemptOutcome(pod, at(0)), { state: 'active', startedAt: stamp(-900), stepRunningSince: stamp(-15) });
  });
});

describe('isActive', () => {
  const cases: Array<[Parameters<typeof stepPod>[2], boolean]> = [['Pending', true], ['Running', true], ['Succeeded', false], ['Failed', false]];
  for (const [phase, active] of cases) it(`${phase} → ${active}`, () => assert.equal(isActive(stepPod('a', 1, phase)), active));
});

describe('truncate', () => {
  const cases: Array<[string, number, string]> = [
    ['short', 10, 'short'],
    ['exactly10!', 10, 'exactly10!'],
    ['eleven chars', 10, 'eleven ch…'],
  ];
  for (const [text, max, expected] of cases) it(`${JSON.stringify(text)} at ${max}`, () => assert.equal(truncate(text, max), expected));
});

describe('podForCache', () => {
  const pod: Pod = {
    ...stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), containerStatuses: [terminated(3, { message: 'loss is NaN', finishedAt: stamp(-1) })] } }),
    spec: { containers: [{ name: 'publish-outputs', image: 'ferry:0.1.0' }] },
  };
  it('drops the spec and keeps metadata and status', () => {
    const slim = podForCache(pod);
    assert.equal(slim.spec, undefined);
    assert.deepEqual(slim.metadata, pod.metadata);
    assert.deepEqual(slim.status, pod.status);
  });
  it('means the same to the planner as the whole Pod', () => {
    assert.deepEqual(attemptOutcome(podForCache(pod)), attemptOutcome(pod));
    assert.equal(isActive(podForCache(pod)), isActive(pod));
  });
});
