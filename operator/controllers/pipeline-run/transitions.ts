// Every change of a step's phase, by name (pure): plan.ts decides which transition applies,
// these functions say what it does to the step's status. Each returns a new StepStatus and
// clears what no longer holds (a retry time once running again, a message once succeeded).
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { StepOutput, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { truncate } from './pod-status.ts';

/** Outputs of an earlier execution of the same step: a cache hit, or a step of the run being resumed. */
export interface Reused {
  run: string;
  outputs: StepOutput[];
  metrics?: Record<string, number>;
  results?: Record<string, string>;
  /** A forEach step's items. */
  collection?: StepStatus['collection'];
  /** `<run uid>/<step>` of the execution that produced them: what is invalidated if an output is gone. */
  origin: string;
}

/** A Kubernetes timestamp (second precision). */
export const iso = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** A step that has not started. */
export const pendingStep = (name: string): StepStatus => ({ name, phase: 'Pending', attempts: 0 });

/** Drops members set to undefined, so a status compares equal to what the API server stores. */
function clean(step: StepStatus): StepStatus {
  for (const key of Object.keys(step) as Array<keyof StepStatus>) if (step[key] === undefined) delete step[key];
  if (step.outputs?.length === 0) delete step.outputs;
  return step;
}

/** Pending or Retrying → Running: a new attempt whose Pod is about to be created. */
export function startAttempt(step: StepStatus, attempt: number, podName: string, now: Date, cacheKey?: string): StepStatus {
  return clean({
    ...step, phase: 'Running', attempts: attempt, podName, retryAt: undefined, reason: undefined, message: undefined,
    cause: undefined, exitCode: undefined, startedAt: step.startedAt ?? iso(now), ...(cacheKey ? { cacheKey } : {}),
  });
}

/** → Running: a Pod of a newer attempt exists that status does not know of (its write was lost). */
export function adoptAttempt(step: StepStatus, attempt: number, podName: string, createdAt: string): StepStatus {
  return clean({ ...step, phase: 'Running', attempts: attempt, podName, retryAt: undefined, startedAt: step.startedAt ?? createdAt });
}

/** Running → Succeeded, with what the attempt published. */
export function succeedStep(
  step: StepStatus, finishedAt: string, outputs: StepOutput[], metrics: Record<string, number> | undefined, results?: Record<string, string>,
): StepStatus {
  return clean({
    ...step, phase: 'Succeeded', finishedAt, reason: undefined,
    // Why the cache could not serve this step stays on record.
    message: step.message?.startsWith('cache miss:') ? step.message : undefined,
    outputs, metrics: metrics && Object.keys(metrics).length > 0 ? metrics : undefined,
    results: results && Object.keys(results).length > 0 ? results : undefined,
  });
}

/** Pending → Skipped: its condition is false, or a step it needs did not succeed. */
export const skipStep = (step: StepStatus, reason: string, message: string, now: Date): StepStatus =>
  clean({ ...step, phase: 'Skipped', reason, message: truncate(message, 1024), finishedAt: iso(now) });

/** Pending → Running: a forEach step starts its items. */
export const startFanOut = (step: StepStatus, total: number, now: Date): StepStatus =>
  clean({ ...step, phase: 'Running', reason: undefined, message: undefined, startedAt: step.startedAt ?? iso(now), items: { total, pending: total, running: 0, succeeded: 0, failed: 0 } });

/**
 * What a failed attempt leaves on its step: its cause and exit code (until the next attempt
 * starts), and the infrastructure losses retried so far (kept for the step's life).
 */
export interface AttemptFailure {
  cause?: StepStatus['cause'];
  exitCode?: number;
  infrastructureRetries?: number;
}

const failureOf = (step: StepStatus, failure: AttemptFailure = {}): Partial<StepStatus> => ({
  cause: failure.cause, exitCode: failure.exitCode, infrastructureRetries: failure.infrastructureRetries ?? step.infrastructureRetries,
});

/** Running → Retrying: the attempt failed and another is due at `retryAt`. */
export function retryStep(step: StepStatus, reason: string, message: string, finishedAt: string, retryAt: Date, failure?: AttemptFailure): StepStatus {
  // Millisecond precision: a retry must not start before its backoff has passed.
  return clean({
    ...step, phase: 'Retrying', reason, finishedAt, retryAt: retryAt.toISOString(), message: truncate(`attempt ${step.attempts ?? 1} ${message}`, 1024),
    ...failureOf(step, failure),
  });
}

/** Running → Failed: no retries left, or a failure retrying cannot fix. */
export function failStep(step: StepStatus, reason: string, message: string, finishedAt: string, failure?: AttemptFailure): StepStatus {
  return clean({ ...step, phase: 'Failed', reason, finishedAt, retryAt: undefined, message: truncate(message, 1024), ...failureOf(step, failure) });
}

/** Pending → Cached: an earlier execution's outputs are reused; no Pod runs. */
export function reuseStep(step: StepStatus, reused: Reused, now: Date, cacheKey: string | undefined): StepStatus {
  return clean({
    ...step, phase: 'Cached', cachedFrom: reused.run, outputs: reused.outputs, metrics: reused.metrics,
    results: reused.results, collection: reused.collection, cacheKey, startedAt: iso(now), finishedAt: iso(now), reason: undefined, message: undefined,
  });
}

/** Pending, waiting: an identical step runs in another run; its result will be reused. */
export const waitForTwin = (step: StepStatus, twinRun: string): StepStatus =>
  ({ ...step, reason: Reasons.WaitingForCache, message: `an identical step is running in run "${twinRun}"; waiting for its result` });

/** The run ended early: Running and Retrying steps are Cancelled, Pending ones Skipped, finished ones stay. */
export function endStep(step: StepStatus, now: Date): StepStatus {
  if (step.phase === 'Running' || step.phase === 'Retrying') return clean({ ...step, phase: 'Cancelled', retryAt: undefined, finishedAt: iso(now) });
  if (step.phase === 'Pending') return { ...step, phase: 'Skipped' };
  return step;
}

/** A step whose outputs downstream steps can use. */
export const isDone = (phase: string | undefined): boolean => phase === 'Succeeded' || phase === 'Cached';

export const FINAL_STEP_PHASES: ReadonlySet<string> = new Set(['Succeeded', 'Cached', 'Failed', 'Cancelled', 'Skipped']);
