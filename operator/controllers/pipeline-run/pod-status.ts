// What a step Pod's status means for its attempt (pure): still going, succeeded, or failed
// with a message a person can act on (exit code, termination message, reason).
import type { Pod } from '../../kube/pod.ts';
import { Reasons } from '../../api/v1alpha1/conditions.ts';

export type AttemptOutcome =
  | { state: 'active'; startedAt?: string }
  | { state: 'succeeded'; startedAt?: string; finishedAt?: string }
  | { state: 'failed'; startedAt?: string; finishedAt?: string; reason: string; message: string };

export const STEP_CONTAINER = 'step';
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

export const isActive = (pod: Pod): boolean => pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

export function truncate(text: string, max = MAX_MESSAGE): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
