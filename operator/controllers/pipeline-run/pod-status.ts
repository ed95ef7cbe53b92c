// What a step Pod's status means for its attempt (pure): still going, succeeded, or failed
// with a cause (docs/architecture.md, "Failures by cause") and a message a person can act on
// (exit code, termination message, reason). plan.ts decides from it; retry-policy.ts retries by cause.
import { parseTerminationMessage } from '../../agent/protocol.ts';
import type { Pod } from '../../kube/pod.ts';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { StepStatus } from '../../api/v1alpha1/pipeline-run.ts';

/** Why an attempt failed (the step status's `cause`): decides whether it is retried (retry-policy.ts). */
export type FailureCause = NonNullable<StepStatus['cause']>;

/** Every cause, in the order docs/architecture.md lists them. */
export const FAILURE_CAUSES = [
  'Error', 'OOMKilled', 'Evicted', 'Preempted', 'NodeLost', 'ImagePullFailed', 'Unschedulable', 'DeadlineExceeded', 'AgentFailed',
] as const satisfies readonly FailureCause[];

/** The step reason each cause shows (reasons from before causes existed are kept: Failed, TimedOut). */
export const REASON_OF_CAUSE: Readonly<Record<FailureCause, string>> = {
  Error: Reasons.Failed,
  OOMKilled: Reasons.OOMKilled,
  Evicted: Reasons.Evicted,
  Preempted: Reasons.Preempted,
  NodeLost: Reasons.NodeLost,
  ImagePullFailed: Reasons.ImagePullFailed,
  Unschedulable: Reasons.Unschedulable,
  DeadlineExceeded: Reasons.TimedOut,
  AgentFailed: Reasons.Failed,
};

/** How long a Pod may stay Pending on an image it cannot pull, or on no node to run it, before its attempt fails. */
export interface PendingTimeouts {
  imagePullTimeoutSeconds: number;
  unschedulableTimeoutSeconds: number;
}

export type AttemptOutcome =
  | {
    state: 'active';
    startedAt?: string;
    /** While the step container (the user's) runs: when it started. Its timeout counts from here. */
    stepRunningSince?: string;
    /** While the Pod is stuck (an image it cannot pull, no node): when that fails the attempt (ms precision). */
    failsAt?: string;
  }
  | { state: 'succeeded'; startedAt?: string; finishedAt?: string }
  | { state: 'failed'; startedAt?: string; finishedAt?: string; reason: string; message: string; cause: FailureCause; exitCode?: number };

export const STEP_CONTAINER = 'step';
export const FETCH_CONTAINER = 'fetch-inputs';
export const PUBLISH_CONTAINER = 'publish-outputs';
const MAX_MESSAGE = 512;

/** Waiting reasons of a container whose image cannot be pulled (the kubelet retries them with a back-off). */
const IMAGE_PULL_WAITING = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']);
/** DisruptionTarget reasons (and Pod status reasons) that mean the node or the Pod's place on it was lost. */
const NODE_LOST_REASONS = new Set(['DeletionByTaintManager', 'DeletionByPodGC', 'NodeLost', 'Terminated', 'Shutdown', 'NodeShutdown']);

type Failed = Extract<AttemptOutcome, { state: 'failed' }>;
type PodCondition = NonNullable<NonNullable<Pod['status']>['conditions']>[number];

/**
 * What a step Pod says of its attempt. `pending` (the planner's clock and settings) lets a
 * Pod that is stuck Pending, on an image it cannot pull or with no node to run it, fail once
 * it has been stuck that long; without it such a Pod stays active.
 */
export function attemptOutcome(pod: Pod, pending?: { now: Date; timeouts: PendingTimeouts }): AttemptOutcome {
  const known = finalOutcomes.get(pod);
  if (known) return known;
  const outcome = outcomeOf(pod, pending);
  if (!isActive(pod)) finalOutcomes.set(pod, outcome);
  return outcome;
}

/**
 * The outcomes of Pods in a final phase, which neither the clock nor the settings change: a
 * pass over a fan-out of thousands reads each from here instead of its statuses again. Keyed
 * by the cached object, which the cache replaces (never changes) on every update.
 */
const finalOutcomes = new WeakMap<Pod, AttemptOutcome>();

function outcomeOf(pod: Pod, pending?: { now: Date; timeouts: PendingTimeouts }): AttemptOutcome {
  const status = pod.status;
  const startedAt = status?.startTime ?? pod.metadata.creationTimestamp;
  const containers = [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])];
  const terminated = containers.map((c) => ({ name: c.name, t: c.state?.terminated })).filter((c) => c.t);
  const finishedAt = terminated.map((c) => c.t?.finishedAt).filter((t): t is string => !!t).sort().at(-1);
  const failed = (cause: FailureCause, message: string, exitCode?: number): Failed =>
    ({ state: 'failed', startedAt, finishedAt, reason: REASON_OF_CAUSE[cause], message: truncate(message), cause, ...(exitCode !== undefined ? { exitCode } : {}) });

  switch (status?.phase) {
    case 'Succeeded':
      return { state: 'succeeded', startedAt, finishedAt };
    case 'Failed': {
      if (status.reason === 'DeadlineExceeded') return failed('DeadlineExceeded', 'exceeded its timeout');
      // NOTE: before the containers: an evicted, preempted or lost Pod's containers were killed
      // (exit 137 or 143), which says nothing of the step itself.
      const lost = lostPod(pod);
      if (lost) return failed(lost.cause, lost.message);
      const exited = terminated.find((c) => (c.t?.exitCode ?? 0) !== 0);
      if (exited?.t) {
        const { exitCode, reason } = exited.t;
        const detail = (exited.t.message ?? '').trim();
        const agent = exited.name !== STEP_CONTAINER;
        if (reason === 'OOMKilled') {
          const message = `container ${exited.name} ran out of memory (OOMKilled, exit code ${exitCode})${detail ? `: ${detail}` : ''}`;
          return failed(agent ? 'AgentFailed' : 'OOMKilled', message, exitCode);
        }
        const message = `container ${exited.name} exited with code ${exitCode}${detail || reason ? `: ${detail || reason}` : ''}`;
        return failed(agent ? 'AgentFailed' : 'Error', message, exitCode);
      }
      // A kubelet that refused the Pod (OutOfcpu, UnexpectedAdmissionError...), or a failure with no more said.
      const message = status.message || status.reason || 'pod failed';
      return { ...failed('Error', message), reason: status.reason || Reasons.Failed };
    }
    default: {
      // A Pod on its way out after its node was lost or it was preempted will never finish.
      const lost = pod.metadata.deletionTimestamp ? lostPod(pod) : undefined;
      if (lost) return failed(lost.cause, lost.message);
      const step = containers.find((c) => c.name === STEP_CONTAINER)?.state?.running?.startedAt;
      const stuck = pending ? stuckPod(pod, pending.timeouts) : undefined;
      // It ends now, when the operator gives up on it (not when a container before it ended).
      if (stuck && pending && Date.parse(stuck.failsAt) <= pending.now.getTime()) return { ...failed(stuck.cause, stuck.message), finishedAt: undefined };
      return { state: 'active', startedAt, ...(step ? { stepRunningSince: step } : {}), ...(stuck ? { failsAt: stuck.failsAt } : {}) };
    }
  }
}

/** An infrastructure loss: the Pod was evicted, preempted, or its node was lost or shut down. */
function lostPod(pod: Pod): { cause: FailureCause; message: string } | undefined {
  const status = pod.status ?? {};
  const disruption = status.conditions?.find((c) => c.type === 'DisruptionTarget' && c.status === 'True');
  const said = (fallback: string) => status.message || disruption?.message || fallback;
  // The kubelet's eviction (node pressure, a volume or container over its ephemeral-storage limit), or kubectl drain's.
  if (status.reason === 'Evicted' || disruption?.reason === 'EvictionByEvictionAPI') return { cause: 'Evicted', message: said('the Pod was evicted') };
  if (status.reason === 'Preempting' || disruption?.reason === 'PreemptionByScheduler') {
    return { cause: 'Preempted', message: said('the Pod was preempted by a Pod of higher priority') };
  }
  if (NODE_LOST_REASONS.has(status.reason ?? '') || NODE_LOST_REASONS.has(disruption?.reason ?? '')) {
    return { cause: 'NodeLost', message: said('the node running the Pod was lost') };
  }
  // Set by the kubelet for its own evictions and for a graceful node shutdown (the reasons above say which).
  if (disruption?.reason === 'TerminationByKubelet') return { cause: 'NodeLost', message: said('the kubelet stopped the Pod') };
  return undefined;
}

/**
 * A Pending Pod that waits for something that may never come: an image it cannot pull, or a
 * node to run it. The waiting container carries no timestamp, so the wait is measured from
 * the latest thing known to precede it: the Pod's start or scheduling, or the previous init
 * container's end (init containers run one after the other, so the step's image is pulled
 * only once fetch-inputs ended). An unschedulable Pod is measured from its PodScheduled
 * condition's last transition.
 */
function stuckPod(pod: Pod, timeouts: PendingTimeouts): { cause: FailureCause; failsAt: string; message: string } | undefined {
  const status = pod.status ?? {};
  const condition = (type: string): PodCondition | undefined => status.conditions?.find((c) => c.type === type);
  const scheduled = condition('PodScheduled');
  const deadline = (since: number, seconds: number) => new Date(since + seconds * 1000).toISOString();
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
    const since = Date.parse(scheduled.lastTransitionTime ?? pod.metadata.creationTimestamp ?? '');
    if (!Number.isFinite(since)) return undefined;
    const seconds = timeouts.unschedulableTimeoutSeconds;
    return { cause: 'Unschedulable', failsAt: deadline(since, seconds), message: `no node could run the Pod for ${seconds}s${scheduled.message ? `: ${scheduled.message}` : ''}` };
  }
  const containers = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])];
  const pulling = containers.find((c) => IMAGE_PULL_WAITING.has(c.state?.waiting?.reason ?? ''));
  if (!pulling) return undefined;
  const before = (status.initContainerStatuses ?? []).map((c) => c.state?.terminated?.finishedAt);
  const times = [status.startTime, scheduled?.status === 'True' ? scheduled.lastTransitionTime : undefined, ...before, pod.metadata.creationTimestamp]
    .map((t) => Date.parse(t ?? '')).filter(Number.isFinite);
  if (times.length === 0) return undefined;
  const seconds = timeouts.imagePullTimeoutSeconds;
  const waiting = pulling.state?.waiting;
  const detail = waiting?.message ? `: ${waiting.message}` : '';
  return {
    cause: 'ImagePullFailed',
    failsAt: deadline(Math.max(...times), seconds),
    message: `container ${pulling.name} could not pull its image ${JSON.stringify(pulling.image ?? '')} for ${seconds}s (${waiting?.reason})${detail}`,
  };
}

/**
 * What the Pod cache keeps of a step Pod: its metadata and status. The operator never reads a
 * cached Pod's spec (it builds specs, and what a Pod means is in its status), and the spec is
 * most of a step Pod's size: three containers, their environment and volumes.
 */
export function podForCache(pod: Pod): Pod {
  const { spec: _spec, ...rest } = pod;
  return rest;
}

export const isActive = (pod: Pod): boolean => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

export function truncate(text: string, max = MAX_MESSAGE): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The publish-outputs container's termination message, if it is a report or a manifest pointer. */
export function terminationMessageOf(pod: Pod) {
  const publish = pod.status?.containerStatuses?.find((c) => c.name === PUBLISH_CONTAINER);
  return parseTerminationMessage(publish?.state?.terminated?.message);
}
