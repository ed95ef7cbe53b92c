import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { Pod } from '../../kube/pod.ts';
import { attemptOutcome, isActive, podForCache, truncate, type AttemptOutcome } from './pod-status.ts';
import { stamp, stepPod, terminated } from './testing.ts';

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
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-1), reason: Reasons.Failed, message: 'container step exited with code 3: loss is NaN' },
    ],
    [
      'Failed without a message uses the container reason',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), containerStatuses: [terminated(137, { reason: 'OOMKilled', finishedAt: stamp(-1) })] } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-1), reason: Reasons.Failed, message: 'container step exited with code 137: OOMKilled' },
    ],
    [
      'Failed in an init container names that container',
      stepPod('a', 1, 'Failed', {
        status: { startTime: stamp(-30), initContainerStatuses: [terminated(2, { name: 'fetch-inputs', message: 'no such object', finishedAt: stamp(-5) })] },
      }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: stamp(-5), reason: Reasons.Failed, message: 'container fetch-inputs exited with code 2: no such object' },
    ],
    [
      'Failed with DeadlineExceeded is TimedOut',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: Reasons.TimedOut, message: 'exceeded its timeout' },
    ],
    [
      'Failed without container statuses uses the Pod reason and message',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30), reason: 'Evicted', message: 'The node was low on resource: memory.' } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: 'Evicted', message: 'The node was low on resource: memory.' },
    ],
    [
      'Failed with nothing to say',
      stepPod('a', 1, 'Failed', { status: { startTime: stamp(-30) } }),
      { state: 'failed', startedAt: stamp(-30), finishedAt: undefined, reason: Reasons.Failed, message: 'pod failed' },
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
