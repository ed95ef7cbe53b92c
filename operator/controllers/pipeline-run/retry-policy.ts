// Whether a failed attempt is retried, and after how long (pure): the step's `retries`
// (policy, limit, backoff) weighed against the attempt's cause (pod-status.ts). plan.ts asks on
// every failed attempt and records the answer in the step's status through transitions.ts.
//
//   cause                          Always   OnError   OnInfrastructure
//   Error, OOMKilled                 ✓         ✓             ·
//   Evicted, Preempted, NodeLost     ✓         ·             ✓        (first retried free, below)
//   DeadlineExceeded, AgentFailed    ✓         ·             ·
//   ImagePullFailed, Unschedulable   ·         ·             ·        (another attempt waits alike)
//
// Whatever the policy, an infrastructure loss (Evicted, Preempted, NodeLost) is retried without
// using `retries.limit`, up to --max-infrastructure-retries times per step (counted in the
// step's `infrastructureRetries`); past that it is one more failure the policy decides on.
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { FailureCause, PendingTimeouts } from './pod-status.ts';

export type Retries = NonNullable<StepSpec['retries']>;
export type RetryPolicy = NonNullable<Retries['policy']>;

/** The operator's settings for failed attempts (config.ts → operator.ts → gather.ts → RunFacts). */
export interface FailureSettings extends PendingTimeouts {
  /** Infrastructure losses of one step retried without using its retries.limit. */
  maxInfrastructureRetries: number;
  /** The timeout of a step that sets none; unset: such a step has no timeout of the planner's. */
  defaultStepTimeoutSeconds?: number;
}

/** The defaults of config.ts, for facts that carry no settings (unit tests). */
export const DEFAULT_FAILURE_SETTINGS: Readonly<FailureSettings> = Object.freeze({
  imagePullTimeoutSeconds: 300,
  unschedulableTimeoutSeconds: 600,
  maxInfrastructureRetries: 3,
});

export const DEFAULT_BACKOFF_SECONDS = 10;
export const DEFAULT_MAX_BACKOFF_SECONDS = 300;
export const DEFAULT_BACKOFF_FACTOR = 2;

/** Lost to the infrastructure, not to the step: retried without using retries.limit. */
export const INFRASTRUCTURE_CAUSES: ReadonlySet<FailureCause> = new Set<FailureCause>(['Evicted', 'Preempted', 'NodeLost']);
/** A new attempt would wait for the same image or the same missing node. */
const NEVER_RETRIED: ReadonlySet<FailureCause> = new Set<FailureCause>(['ImagePullFailed', 'Unschedulable']);

const RETRIED_BY: Readonly<Record<RetryPolicy, ReadonlySet<FailureCause>>> = {
  Always: new Set<FailureCause>(['Error', 'OOMKilled', 'Evicted', 'Preempted', 'NodeLost', 'DeadlineExceeded', 'AgentFailed']),
  OnError: new Set<FailureCause>(['Error', 'OOMKilled']),
  OnInfrastructure: INFRASTRUCTURE_CAUSES,
};

export type RetryDecision =
  | { retry: true; delaySeconds: number; consumesRetry: boolean }
  | { retry: false; why: string };

/**
 * Decides on the attempt that just failed. `attempts` counts attempts started so far (the
 * failed one included); `infrastructureRetries` those of them retried for free so far.
 */
export function decideRetry(
  retries: Retries | undefined,
  cause: FailureCause,
  attempts: number,
  infrastructureRetries: number,
  settings: Pick<FailureSettings, 'maxInfrastructureRetries'>,
): RetryDecision {
  if (NEVER_RETRIED.has(cause)) return { retry: false, why: `${cause} is never retried` };
  const delaySeconds = retryDelaySeconds({ retries }, attempts);
  const infrastructure = INFRASTRUCTURE_CAUSES.has(cause);
  if (infrastructure && infrastructureRetries < settings.maxInfrastructureRetries) return { retry: true, delaySeconds, consumesRetry: false };
  const free = infrastructure ? ` (after ${infrastructureRetries} free retries of infrastructure losses)` : '';
  const policy = retries?.policy ?? 'Always';
  if (!RETRIED_BY[policy].has(cause)) return { retry: false, why: `retries.policy ${policy} does not retry ${cause}${free}` };
  const limit = retries?.limit ?? 0;
  const used = Math.max(0, attempts - 1 - infrastructureRetries);
  if (used >= limit) return { retry: false, why: `${limit === 0 ? 'no retries allowed' : `all ${limit} retries used`}${free}` };
  return { retry: true, delaySeconds, consumesRetry: true };
}

/**
 * Delay before the attempt that follows `failures` failed attempts of a step:
 * backoffSeconds × factor^(failures − 1), at most maxBackoffSeconds.
 */
export function retryDelaySeconds(step: { retries?: Retries | undefined }, failures: number): number {
  const base = step.retries?.backoffSeconds ?? DEFAULT_BACKOFF_SECONDS;
  const max = step.retries?.maxBackoffSeconds ?? DEFAULT_MAX_BACKOFF_SECONDS;
  const factor = step.retries?.factor ?? DEFAULT_BACKOFF_FACTOR;
  // NOTE: factor^n overflows to Infinity for a huge n; min() keeps it at the cap.
  return Math.min(max, base * factor ** Math.max(0, failures - 1));
}
