// Folds what a pass's child writes did into the status it will write (pure): Pods the API
// refused fail their steps and so the run; registered ModelVersions go into their steps and the
// ModelsRegistered condition; explanations of cache misses into the steps that ran. reconcile.ts
// writes the result once, then deletes Pods and emits the Events, in that order.
import { CONDITION_MODELS_REGISTERED, EventReasons, Reasons, findCondition, setCondition } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../kube/pod.ts';
import { activePods, endRun, stepFailedMessage, type RunEvent, type StepLaunch } from './plan.ts';
import { registrationCondition, type RegistrationOutcome } from './registration.ts';
import { failStep, iso } from './transitions.ts';

/** What one pass will do once its children are written: the status to write, the Pods to delete after it, then the Events. */
export interface Pass {
  status: PipelineRunStatus;
  delete: Pod[];
  events: RunEvent[];
}

export interface ChildWrites {
  /** The launches the plan asked for, the Pods created for them, and those the API refused (by Pod name, with why). */
  pods?: { launches: StepLaunch[]; created: Pod[]; rejected: Map<string, string> };
  registration?: RegistrationOutcome;
  /** Why the cache had nothing for a step that was started, by step name. */
  explanations?: Map<string, string>;
}

export function foldPass(pass: Pass, writes: ChildWrites, context: { pods: Pod[]; now: Date }): Pass {
  let { status, delete: deletions, events } = pass;
  status = { ...status, steps: status.steps?.map((s) => ({ ...s })) };
  if (!status.steps) delete status.steps;

  for (const [name, message] of writes.explanations ?? []) {
    const step = status.steps?.find((s) => s.name === name);
    if (step?.phase === 'Running') step.message = message;
  }

  const rejected = writes.pods?.rejected ?? new Map<string, string>();
  const refusedLaunches = (writes.pods?.launches ?? []).filter((l) => rejected.has(l.podName));
  if (refusedLaunches.length > 0) {
    // A Pod the API server refuses fails its step for good (retrying the same Pod cannot help), and so the run.
    const refusedSteps = new Set(refusedLaunches.map((l) => l.step.name));
    events = events.filter((e) => !(e.reason === EventReasons.StepStarted && e.step !== undefined && refusedSteps.has(e.step)));
    for (const launch of refusedLaunches) {
      const i = status.steps?.findIndex((s) => s.name === launch.step.name) ?? -1;
      const step = status.steps?.[i];
      if (!step) continue;
      const tries = (step.attempts ?? 1) > 1 ? ` after ${step.attempts} attempts` : '';
      const message = `${rejected.get(launch.podName)!}${tries}`;
      status.steps![i] = failStep(step, Reasons.PodRejected, message, iso(context.now));
      events.push({ type: 'Warning', reason: EventReasons.StepFailed, message: `step "${launch.step.name}" failed${tries}: ${rejected.get(launch.podName)!}` });
    }
    const failed = status.steps!.find((s) => s.phase === 'Failed')!;
    const ended = endRun(status, 'Failed', Reasons.Failed, stepFailedMessage(failed), context.now);
    status = ended.status;
    events.push(ended.event);
    // Stop everything of the run, the Pods created in this very pass too.
    deletions = [...new Set([...deletions, ...activePods(context.pods), ...(writes.pods?.created ?? [])])];
  }

  const registration = writes.registration;
  if (registration) {
    for (const step of status.steps ?? []) {
      const models = registration.models.get(step.name);
      if (models) step.models = models;
    }
    const condition = registrationCondition(status, registration);
    const shown = findCondition(status.conditions, CONDITION_MODELS_REGISTERED);
    status.conditions = setCondition(status.conditions, condition, context.now);
    // One Event per new refusal, not one per retry.
    if (condition.status === 'False' && (shown?.status !== 'False' || shown.message !== condition.message)) {
      events = [...events, { type: 'Warning', reason: EventReasons.RegistrationFailed, message: condition.message }];
    }
  }
  return { status, delete: deletions, events };
}
