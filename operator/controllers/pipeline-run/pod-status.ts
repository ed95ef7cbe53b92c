// What a step Pod's status means for its attempt (pure): still going, succeeded, or failed
// with a message a person can act on (exit code, termination message, reason).
import { parseTerminationMessage } from '../../agent/protocol.ts';
import type { Pod } from '../../kube/pod.ts';
import { Reasons } from '../../api/v1alpha1/conditions.ts';

export type AttemptOutcome =
  | { state: 'active'; startedAt?: string }
  | { state: 'succeeded'; startedAt?: string; finishedAt?: string }
  | { state: 'failed'; startedAt?: string; finishedAt?: string; reason: string; message: string };

export const STEP_CONTAINER = 'step';
export const FETCH_CONTAINER = 'fetch-inputs';
export const PUBLISH_CONTAINER = 'publish-outputs';
const MAX_MESSAGE = 512;

export function attemptOutcome(pod: Pod): AttemptOutcome {
  const status = pod.status;
  const startedAt = status?.startTime ?? pod.metadata.creationTimestamp;
  const containers = [...(status?.initContainerStatuses ?? []), ...(status?.containerStatuses ?? [])];
  const terminated = containers.map((c) => ({ name: c.name, t: c.state?.terminated })).filter((c) => c.t);
  const finishedAt = terminated.map((c) => c.t?.finishedAt).filter((t): t is string => !!t).sort().at(-1);

  switch (status?.phase) {
    case 'Succeeded':
      return { state: 'succeeded', startedAt, finishedAt };
    case 'Failed': {
      if (status.reason === 'DeadlineExceeded') {
        return { state: 'failed', startedAt, finishedAt, reason: Reasons.TimedOut, message: 'exceeded its timeout' };
      }
      const failed = terminated.find((c) => (c.t?.exitCode ?? 0) !== 0);
      if (failed?.t) {
        const detail = (failed.t.message ?? '').trim() || failed.t.reason || '';
        const message = `container ${failed.name} exited with code ${failed.t.exitCode}${detail ? `: ${detail}` : ''}`;
        return { state: 'failed', startedAt, finishedAt, reason: Reasons.Failed, message: truncate(message) };
      }
      const message = status.message || status.reason || 'pod failed';
      return { state: 'failed', startedAt, finishedAt, reason: status.reason || Reasons.Failed, message: truncate(message) };
    }
    default:
      return { state: 'active', startedAt };
  }
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
