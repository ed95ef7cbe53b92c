// How an endpoint's status moves (pure): a version becoming live opens a serving period and
// closes the one before, stopping closes the open one; and the Serving condition that says, in
// one sentence, what answers and what went wrong.
import type { Condition } from '../../api/v1alpha1/common.ts';
import { CONDITION_SERVING, Reasons } from '../../api/v1alpha1/conditions.ts';
import { MAX_SERVING_HISTORY, type ServedVersion, type ServingStatus } from '../../api/v1alpha1/serving.ts';

export type ServingCondition = Omit<Condition, 'lastTransitionTime'>;

const describe = (v: Pick<ServedVersion, 'modelVersion' | 'digest'>) => `${v.modelVersion} (${v.digest.slice(0, 19)}…)`;

/** `target` answers from `at`: a new period when it is another version than the one live. */
export function becameLive(status: ServingStatus, target: ServedVersion, at: string): ServingStatus {
  const { rollout: _rollout, failed: _failed, ...rest } = status;
  const sameVersion = status.live?.modelVersion === target.modelVersion;
  const since = sameVersion ? status.live!.since : at;
  let history = status.history ?? [];
  if (!sameVersion) {
    history = history.map((h) => (h.until === undefined ? { ...h, until: at } : h));
    history = [...history, { modelVersion: target.modelVersion, version: target.version, digest: target.digest, from: at }].slice(-MAX_SERVING_HISTORY);
  }
  return { ...rest, live: { ...target, since }, history };
}

/** Nothing answers from `at` on. */
export function stoppedServing(status: ServingStatus, at: string): ServingStatus {
  const { live: _live, rollout: _rollout, ...rest } = status;
  return { ...rest, history: (status.history ?? []).map((h) => (h.until === undefined ? { ...h, until: at } : h)) };
}

const stillServes = (status: ServingStatus) =>
  status.live ? `${describe(status.live)} stays live` : 'nothing is served';

export function liveCondition(status: ServingStatus & { live: NonNullable<ServingStatus['live']> }, generation: number): ServingCondition {
  const ready = `${status.readyReplicas ?? 0}/${status.replicas ?? 0} replicas ready`;
  return {
    type: CONDITION_SERVING, status: 'True', reason: Reasons.Live, observedGeneration: generation,
    message: `${describe(status.live)} answers at ${status.url} (${ready})`,
  };
}

export function rollingOutCondition(status: ServingStatus, target: ServedVersion, generation: number): ServingCondition {
  return {
    type: CONDITION_SERVING, status: status.live ? 'True' : 'False', reason: Reasons.RollingOut, observedGeneration: generation,
    message: `rolling out ${describe(target)} (${status.readyReplicas ?? 0}/${status.replicas ?? 0} replicas ready); ${status.live ? `${describe(status.live)} answers meanwhile` : 'nothing is served yet'}`,
  };
}

/** A version that cannot be served (its rollout failed, its image or artifact is refused): what answers instead. */
export function refusedCondition(status: ServingStatus, reason: string, message: string, generation: number): ServingCondition {
  return { type: CONDITION_SERVING, status: status.live ? 'True' : 'False', reason, observedGeneration: generation, message: `${message}; ${stillServes(status)}` };
}

export function notServingCondition(reason: string, message: string, generation: number): ServingCondition {
  return { type: CONDITION_SERVING, status: 'False', reason, observedGeneration: generation, message };
}

export const isLive = (status: ServingStatus): status is ServingStatus & { live: NonNullable<ServingStatus['live']> } => status.live !== undefined;

export { describe as describeServed };
