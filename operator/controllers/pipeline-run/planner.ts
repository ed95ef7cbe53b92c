// What planning a pass works with and produces (pure): the facts a pass gathered, and the
// Planner that collects the plan's Pods to create and delete, Events and wake-up time.
// plan.ts decides; fan-out.ts decides for the items of a forEach step; both write here.
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun, PipelineRunStatus, ResolvedParameter } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec, StepReport } from '../../agent/protocol.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { Pod } from '../../kube/pod.ts';
import type { CacheKey } from './cache-key.ts';
import type { Collection } from './collection.ts';
import type { FreezeOutcome } from './freeze.ts';
import type { FailureSettings } from './retry-policy.ts';
import { isActive, truncate } from './pod-status.ts';
import type { Reused } from './transitions.ts';
import type { StepVariables } from './variables.ts';

/** What the step cache says of a step's cache key (step-cache.ts answers from the informer cache). */
export type CacheLookup = { hit: Reused } | { runningIn: string } | { miss: true };

/** The step cache as the planner sees it: synchronous, no I/O (artifacts are checked after planning). */
export interface CacheView {
  lookup(key: string, step: StepSpec): CacheLookup;
}

/** Everything a pass knows about a live run (gather.ts collects it). */
export interface RunFacts {
  /** A copy of the cached run: planning may not touch the cache's object. */
  run: PipelineRun;
  start: FreezeOutcome;
  /** Pods controlled by the run, from the cache. */
  pods: Pod[];
  now: Date;
  /** ModelVersions the run created (by its uid label): its registrations so far. */
  registered: ModelVersion[];
  /** Reports of succeeded Pods, checked (gather.ts); a Pod absent here has none. */
  reports: Map<string, CheckedReport>;
  /** Results of the run being resumed (spec.resumeFrom), by step name. */
  resumed: Map<string, Reused>;
  /** Earlier executions of identical steps; undefined when nothing may be reused. */
  cache?: CacheView;
  /** When stuck Pods fail, how many infrastructure losses are retried free (config.ts); DEFAULT_FAILURE_SETTINGS when unset. */
  failureSettings?: FailureSettings;
  /** The collections (items' outputs and results) of the run's finished forEach steps, by step name. */
  collections: Map<string, Collection>;
  /** The URI a content-addressed blob of the run's namespace has (a collection the plan makes). */
  blobUri(hex: string): string;
}

/** A succeeded Pod's report, or why it was refused (the step then fails). */
export type CheckedReport = StepReport | { refused: string };

export interface StepLaunch {
  step: StepSpec;
  attempt: number;
  podName: string;
  /** Upstream outputs the step reads, filled once every step has been advanced. */
  inputs: InputSpec[];
  /** Set when the step could have been served from the cache and was not: the key it will be found under. */
  cache?: CacheKey;
  /** One item of a forEach step. */
  item?: { index: number; value: unknown };
  /** Results, item and run variables its command, args and env may use (parameters come from the plan). */
  variables?: Omit<StepVariables, 'params'>;
}

export interface RunEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** The step a StepStarted Event is about (a refused Pod takes it back). */
  step?: string;
}

export interface RunPlan {
  status: PipelineRunStatus;
  create: StepLaunch[];
  delete: Pod[];
  events: RunEvent[];
  parameters: ResolvedParameter[];
  /** The frozen configuration, when the run has one. */
  configuration?: { spec: PipelineConfiguration; uri: string; digest: string };
  /** Earlier results this plan reuses, by step: the shell checks their artifacts still exist. */
  reused: Map<string, Reused>;
  /** Collections this plan made (forEach steps that finished), to store before the status names them. */
  collections: Buffer[];
  /** Step cache lookups made by this plan, for metrics. */
  lookups: Array<'hit' | 'miss' | 'wait'>;
  requeueAfterMs?: number;
  /** The run waits for a system that is down (a registry): retry with the key's backoff. */
  backoff?: boolean;
}

/** Pods that are still running and not already being deleted. */
export const activePods = (pods: Pod[]): Pod[] => pods.filter((pod) => isActive(pod) && !pod.metadata.deletionTimestamp);

/** Collects the outputs of planning one run. */
export class Planner {
  readonly create: StepLaunch[] = [];
  readonly delete: Pod[] = [];
  readonly events: RunEvent[] = [];
  readonly reused = new Map<string, Reused>();
  readonly collections: Buffer[] = [];
  readonly lookups: RunPlan['lookups'] = [];
  private wakeAt = Infinity;
  readonly facts: RunFacts;
  readonly now: number;

  constructor(facts: RunFacts) {
    this.facts = facts;
    this.now = facts.now.getTime();
  }

  wake(at: number): void {
    this.wakeAt = Math.min(this.wakeAt, at);
  }

  /** A run that ended has no timed work left. */
  sleep(): void {
    this.wakeAt = Infinity;
  }

  event(type: RunEvent['type'], reason: string, message: string, step?: string): void {
    this.events.push({ type, reason, message: truncate(message, 1024), ...(step ? { step } : {}) });
  }

  deleteActive(pods: Pod[]): void {
    for (const pod of activePods(pods)) if (!this.delete.includes(pod)) this.delete.push(pod);
  }

  finish(status: PipelineRunStatus, parameters: ResolvedParameter[], backoff = false): RunPlan {
    const requeueAfterMs = Number.isFinite(this.wakeAt) ? Math.max(0, this.wakeAt - this.now) : undefined;
    const start = this.facts.start;
    return {
      status,
      create: this.create,
      delete: this.delete,
      events: this.events,
      parameters,
      reused: this.reused,
      collections: this.collections,
      lookups: this.lookups,
      ...(start.kind === 'frozen' ? { configuration: { spec: start.configuration, uri: start.uri, digest: start.digest } } : {}),
      ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
      ...(backoff ? { backoff } : {}),
    };
  }
}
