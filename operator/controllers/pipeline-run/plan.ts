// Decides, from gathered facts only (pure, no I/O), what a PipelineRun should look like now
// and what must happen to get there: the new status, the Pods to create and delete, the events
// to emit, and when to look again. reconcile.ts gathers the facts and applies the plan.
//
// A step moves through these phases (the attempt counter grows on each launch):
//
//   Pending ──deps succeeded, slot free──► Running ──Pod Succeeded──► Succeeded
//                                           │  ▲
//                 Pod Failed / timed out,   │  │ retryAt reached, slot free
//                 attempts <= retries.limit ▼  │
//                                          Retrying
//                 Pod Failed / timed out,
//                 no retries left ─────────────────────────────────► Failed
//
//   When the run ends early (a step Failed, the run timed out, spec.cancel): Running and
//   Retrying steps become Cancelled (their Pods are deleted), Pending steps become Skipped.
//
// The run is Pending until its first step starts, Running until every step Succeeded
// (Succeeded) or it ends early (Failed or Cancelled). Pods have deterministic names, so a
// launch that is planned twice creates one Pod.
import type { Condition } from '../../api/v1alpha1/common.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import { CONDITION_SUCCEEDED, EventReasons, Reasons, setCondition } from '../../api/v1alpha1/conditions.ts';
import { LABEL_ATTEMPT, LABEL_STEP } from '../../api/v1alpha1/labels.ts';
import type {
  PipelineRun, PipelineRunStatus, ResolvedParameter, RunPhase, StepStatus,
} from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec, StepReport } from '../../agent/protocol.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import { stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { attemptOutcome, isActive, truncate } from './pod-status.ts';
import { cacheKeyOf, isCacheable, type CacheKey } from './cache-key.ts';
import type { FreezeOutcome } from './freeze.ts';
import {
  FINAL_STEP_PHASES, adoptAttempt, endStep, failStep, isDone, iso, pendingStep, retryStep, reuseStep, startAttempt, succeedStep,
  waitForTwin, type Reused,
} from './transitions.ts';

export { isDone, type Reused };

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
  /** Step cache lookups made by this plan, for metrics. */
  lookups: Array<'hit' | 'miss' | 'wait'>;
  requeueAfterMs?: number;
  /** The run waits for a system that is down (a registry): retry with the key's backoff. */
  backoff?: boolean;
}

/**
 * One Event per type and reason for a pass: a pass that starts 199 steps says so once, naming
 * them, instead of writing 199 Events. Each Event is a write to the API server, as costly as a
 * Pod's, and the run's status already holds every step's story.
 */
export function collapseEvents(events: RunEvent[]): RunEvent[] {
  const groups = new Map<string, RunEvent[]>();
  for (const e of events) {
    const key = `${e.type}/${e.reason}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    if (group.length === 1) return first;
    return { type: first.type, reason: first.reason, message: truncate(`${group.length} steps: ${group.map((e) => e.message).join('; ')}`, 1024) };
  });
}

const DEFAULT_BACKOFF_SECONDS = 10;
const DEFAULT_MAX_BACKOFF_SECONDS = 300;
/** While a step waits for its twin in another run: how often to look again. */
const TWIN_POLL_MS = 2000;

const ms = (t: string | undefined) => (t ? Date.parse(t) : NaN);
const attemptOf = (pod: Pod) => Number(pod.metadata.labels?.[LABEL_ATTEMPT] ?? 0);

/** Delay before the attempt that follows `failures` failed attempts. */
export function retryDelaySeconds(step: StepSpec, failures: number): number {
  const base = step.retries?.backoffSeconds ?? DEFAULT_BACKOFF_SECONDS;
  const max = step.retries?.maxBackoffSeconds ?? DEFAULT_MAX_BACKOFF_SECONDS;
  return Math.min(max, base * 2 ** Math.max(0, failures - 1));
}

/** Pods that are still running and not already being deleted. */
export const activePods = (pods: Pod[]): Pod[] => pods.filter((pod) => isActive(pod) && !pod.metadata.deletionTimestamp);

/** Collects the outputs of planning one run. */
class Planner {
  readonly create: StepLaunch[] = [];
  readonly delete: Pod[] = [];
  readonly events: RunEvent[] = [];
  readonly reused = new Map<string, Reused>();
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

  event(type: RunEvent['type'], reason: string, message: string): void {
    this.events.push({ type, reason, message: truncate(message, 1024) });
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
      lookups: this.lookups,
      ...(start.kind === 'frozen' ? { configuration: { spec: start.configuration, uri: start.uri, digest: start.digest } } : {}),
      ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
      ...(backoff ? { backoff } : {}),
    };
  }
}

/** A live run (not yet Succeeded, Failed or Cancelled) one step forward. */
export function planRun(facts: RunFacts): RunPlan {
  const { run, pods } = facts;
  const p = new Planner(facts);
  const previous = run.status ?? {};
  const status: PipelineRunStatus = { ...previous, observedGeneration: run.metadata.generation ?? 0 };
  const end = (phase: RunPhase, reason: string, message: string): RunPlan => {
    const ended = endRun(status, phase, reason, message, facts.now);
    // Stop whatever still runs, start nothing new, and wait for nothing.
    p.create.splice(0);
    p.sleep();
    p.deleteActive(pods);
    p.events.push(ended.event);
    return p.finish(ended.status, ended.status.parameters ?? []);
  };

  const start = facts.start;
  if (start.kind !== 'frozen') {
    if (run.spec.cancel) return end('Cancelled', Reasons.Cancelled, 'cancelled before it started');
    if (start.kind === 'failed') return end('Failed', start.reason, start.message);
    status.phase = 'Pending';
    status.conditions = succeeded(status.conditions, 'Unknown', start.reason, truncate(start.message, 4096), facts.now);
    return p.finish(status, [], start.backoff === true);
  }
  const configuration = start.configuration;
  const parameters: ResolvedParameter[] = configuration.parameters.map(({ name, value, source }) => ({ name, value, source }));
  status.configuration = { uri: start.uri, digest: start.digest };
  status.parameters = parameters;
  status.pipeline = {
    name: configuration.pipeline.name,
    generation: configuration.pipeline.generation,
    specHash: configuration.pipeline.specHash,
  };

  const previousSteps = new Map((previous.steps ?? []).map((s) => [s.name, s]));
  const podsByStep = new Map<string, Pod[]>();
  for (const pod of pods) {
    const step = pod.metadata.labels?.[LABEL_STEP] ?? '';
    podsByStep.set(step, [...(podsByStep.get(step) ?? []), pod]);
  }
  const steps = configuration.spec.steps.map((spec) =>
    advanceStep(p, run, spec, previousSteps.get(spec.name) ?? pendingStep(spec.name), podsByStep.get(spec.name) ?? []));
  status.steps = steps;
  // An adopted Pod means the run started, even if the status write that said so was lost.
  const firstStart = Math.min(...steps.map((s) => ms(s.startedAt)).filter(Number.isFinite));
  if (!status.startedAt && Number.isFinite(firstStart)) status.startedAt = iso(new Date(firstStart));

  if (run.spec.cancel) return end('Cancelled', Reasons.Cancelled, 'cancelled (spec.cancel is true)');

  const timeoutSeconds = run.spec.timeoutSeconds ?? configuration.spec.timeoutSeconds;
  if (timeoutSeconds && status.startedAt) {
    const deadline = ms(status.startedAt) + timeoutSeconds * 1000;
    if (deadline <= p.now) return end('Failed', Reasons.TimedOut, `run exceeded its timeout of ${timeoutSeconds}s`);
    p.wake(deadline);
  }

  const failed = steps.find((s) => s.phase === 'Failed');
  if (failed) return end('Failed', Reasons.Failed, stepFailedMessage(failed));

  launchReadySteps(p, run, configuration, steps, status);

  const doneCount = steps.filter((s) => isDone(s.phase)).length;
  status.progress = `${doneCount}/${steps.length}`;
  if (doneCount === steps.length) {
    const cached = steps.filter((s) => s.phase === 'Cached').length;
    return end('Succeeded', Reasons.Succeeded, `${steps.length === 1 ? 'its only step' : `all ${steps.length} steps`} succeeded${cached ? ` (${cached} from cache)` : ''}`);
  }

  const running = steps.filter((s) => s.phase === 'Running').map((s) => s.name);
  const retrying = steps.filter((s) => s.phase === 'Retrying').map((s) => s.name);
  const twin = steps.find((s) => s.phase === 'Pending' && s.reason === Reasons.WaitingForCache);
  const waiting = twin ? `step "${twin.name}": ${twin.message ?? 'waiting for an identical step'}` : undefined;
  if (status.startedAt) {
    status.phase = 'Running';
    const parts = [running.length ? `running: ${running.join(', ')}` : '', retrying.length ? `retrying: ${retrying.join(', ')}` : '', waiting ?? ''];
    const message = truncate(parts.filter(Boolean).join('; ') || 'waiting for steps', 1024);
    status.conditions = succeeded(status.conditions, 'Unknown', Reasons.Running, message, facts.now);
  } else {
    status.phase = 'Pending';
    status.conditions = succeeded(status.conditions, 'Unknown', Reasons.Pending, truncate(waiting ?? 'waiting for a free slot', 1024), facts.now);
  }
  return p.finish(status, parameters);
}

/** A finished run's only plan: none of its Pods may keep running. */
export const planFinishedRun = (pods: Pod[]): Pod[] => activePods(pods);

/** The run's condition message when one of its steps failed. */
export const stepFailedMessage = (failed: StepStatus): string =>
  `step "${failed.name}" failed: ${failed.message ?? failed.reason ?? 'unknown error'}`;

/** Moves one step forward from what its Pods say. */
function advanceStep(p: Planner, run: PipelineRun, spec: StepSpec, previous: StepStatus, pods: Pod[]): StepStatus {
  let step = previous;
  if (FINAL_STEP_PHASES.has(step.phase)) {
    if (step.phase !== 'Succeeded') p.deleteActive(pods);
    return step;
  }

  // Adopt a Pod that an earlier reconcile created but could not record (crash, conflict).
  const newest = pods.reduce((max, pod) => Math.max(max, attemptOf(pod)), 0);
  if (newest > (step.attempts ?? 0)) {
    const pod = pods.find((x) => attemptOf(x) === newest)!;
    step = adoptAttempt(step, newest, pod.metadata.name, pod.metadata.creationTimestamp ?? iso(p.facts.now));
  }
  // Pods of earlier attempts must not run on (a timed-out attempt's Pod, say).
  const current = step.attempts ?? 0;
  p.deleteActive(pods.filter((pod) => attemptOf(pod) < current || (step.phase === 'Retrying' && attemptOf(pod) === current)));

  if (step.phase === 'Running') {
    const pod = pods.find((x) => attemptOf(x) === current);
    if (!pod) {
      // Created by an earlier pass but not in the cache yet, or deleted by someone: ensure it exists.
      p.create.push({ step: spec, attempt: current, podName: stepPodName(run.metadata.name, spec.name, current), inputs: [] });
      return step;
    }
    const outcome = attemptOutcome(pod);
    if (outcome.state === 'succeeded') {
      const report = p.facts.reports.get(pod.metadata.name);
      if (report && 'refused' in report) return failAttempt(p, spec, step, Reasons.InvalidStepReport, report.refused, false);
      const published = new Map((report?.outputs ?? []).map((o) => [o.name, o]));
      const missing = (spec.outputs ?? []).filter((o) => !published.has(o.name)).map((o) => o.name);
      if (missing.length > 0) {
        return failAttempt(p, spec, step, Reasons.MissingOutput, `the step's Pod succeeded but reported no ${missing.map((m) => `"${m}"`).join(', ')} output`, false);
      }
      p.event('Normal', EventReasons.StepSucceeded, `step "${spec.name}" succeeded`);
      return succeedStep(step, outcome.finishedAt ?? iso(p.facts.now), (spec.outputs ?? []).map((o) => published.get(o.name)!), report?.metrics);
    }
    if (outcome.state === 'failed') return failAttempt(p, spec, step, outcome.reason, outcome.message, true, outcome.finishedAt);
    if (spec.timeoutSeconds && outcome.startedAt) {
      const deadline = ms(outcome.startedAt) + spec.timeoutSeconds * 1000;
      if (deadline <= p.now) {
        p.deleteActive([pod]);
        return failAttempt(p, spec, step, Reasons.TimedOut, `exceeded its timeout of ${spec.timeoutSeconds}s`, true);
      }
      p.wake(deadline);
    }
    return step;
  }

  // NOTE: a retry that is due but waits for a free slot needs no timer: the Pod that frees
  // the slot wakes the run. Waking at a past time would requeue the run at once, forever.
  if (step.phase === 'Retrying' && ms(step.retryAt) > p.now) p.wake(ms(step.retryAt));
  return step;
}

/** A failed attempt: Retrying if retries are left and retrying can help, else Failed. */
function failAttempt(
  p: Planner, spec: StepSpec, step: StepStatus, reason: string, message: string, retryable: boolean, finishedAt?: string,
): StepStatus {
  const attempts = step.attempts ?? 1;
  const finished = finishedAt ?? iso(p.facts.now);
  if (retryable && attempts <= (spec.retries?.limit ?? 0)) {
    const retryAt = new Date(p.now + retryDelaySeconds(spec, attempts) * 1000);
    p.wake(retryAt.getTime());
    p.event('Warning', EventReasons.StepRetrying, `step "${spec.name}" attempt ${attempts} failed (${message}); retrying at ${retryAt.toISOString()}`);
    return retryStep(step, reason, message, finished, retryAt);
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed${tries}: ${message}`);
  return failStep(step, reason, `${message}${tries}`, finished);
}

/**
 * Starts Pending steps whose dependencies are done and Retrying steps whose time came, within
 * parallelism. A step with an earlier result to reuse (the resumed run's, or the step cache's)
 * is Cached instead, which may make its dependants ready in turn, so this repeats until
 * nothing changes: one plan follows cache hits down the whole graph.
 */
function launchReadySteps(p: Planner, run: PipelineRun, configuration: PipelineConfiguration, steps: StepStatus[], status: PipelineRunStatus): void {
  const specs = configuration.spec.steps;
  const byName = new Map(steps.map((s) => [s.name, s]));
  const parameters = new Map(configuration.parameters.map((x) => [x.name, x.value]));
  let slots = (run.spec.parallelism ?? Infinity) - steps.filter((s) => s.phase === 'Running').length;
  for (let changed = true; changed; ) {
    changed = false;
    for (const [i, spec] of specs.entries()) {
      const step = steps[i]!;
      const ready =
        (step.phase === 'Pending' && (spec.dependsOn ?? []).every((d) => isDone(byName.get(d)?.phase))) ||
        (step.phase === 'Retrying' && ms(step.retryAt) <= p.now);
      if (!ready) continue;
      const set = (next: StepStatus) => { steps[i] = next; byName.set(next.name, next); };
      const inputs = inputsOf(spec, byName, configuration);
      const fresh = step.phase === 'Pending';
      const cache = fresh && p.facts.cache && isCacheable(spec, run.spec.cachePolicy) ? cacheKeyOf(spec, parameters, inputs) : undefined;
      const resumed = fresh ? p.facts.resumed.get(spec.name) : undefined;
      const found = resumed ? { hit: resumed } : fresh ? lookUp(p, cache, spec) : undefined;
      if (found && 'hit' in found) {
        set(reuseStep(step, found.hit, p.facts.now, cache?.key));
        p.reused.set(spec.name, found.hit);
        p.event('Normal', EventReasons.StepCached, `step "${spec.name}" reused the results of run "${found.hit.run}"`);
        changed = true;
        continue;
      }
      if (found && 'runningIn' in found) {
        set(waitForTwin(step, found.runningIn));
        p.wake(p.now + TWIN_POLL_MS);
        continue;
      }
      if (slots <= 0) continue;
      if (cache) p.lookups.push('miss'); // counted when the step runs, not on each pass it waits for a slot
      const attempt = (step.attempts ?? 0) + 1;
      const podName = stepPodName(run.metadata.name, spec.name, attempt);
      set(startAttempt(step, attempt, podName, p.facts.now, cache?.key));
      status.startedAt ??= iso(p.facts.now);
      p.create.push({ step: spec, attempt, podName, inputs, ...(cache ? { cache } : {}) });
      p.events.push({ type: 'Normal', reason: EventReasons.StepStarted, message: `step "${spec.name}" started (attempt ${attempt})`, step: spec.name });
      slots--;
    }
  }
  // A Pod re-created for a running attempt (see advanceStep) needs its inputs too.
  for (const launch of p.create) if (launch.inputs.length === 0) launch.inputs = inputsOf(launch.step, byName, configuration);
  if (status.startedAt === undefined && steps.some((s) => s.phase === 'Cached')) status.startedAt = iso(p.facts.now);
}

/** Asks the step cache for a key, counting a hit or a wait (a miss is counted when the step starts); a resumed result is not a lookup. */
function lookUp(p: Planner, cache: CacheKey | undefined, spec: StepSpec): { hit: Reused } | { runningIn: string } | undefined {
  if (!cache || !p.facts.cache) return undefined;
  const answer = p.facts.cache.lookup(cache.key, spec);
  if (!('miss' in answer)) p.lookups.push('hit' in answer ? 'hit' : 'wait');
  return 'miss' in answer ? undefined : answer;
}

/** Where each input of a step comes from: an upstream step's published output, or a pinned external input. */
function inputsOf(spec: StepSpec, steps: Map<string, StepStatus>, configuration: PipelineConfiguration): InputSpec[] {
  return (spec.inputs ?? []).map((input) => {
    if (input.from) {
      const { step, output: name } = input.from;
      // NOTE: validation guarantees the producer is upstream, so it is done and published it.
      const output = steps.get(step)?.outputs?.find((o) => o.name === name);
      return { name: input.name, uri: output?.uri ?? '', digest: output?.digest ?? '' };
    }
    const external = (configuration.externalInputs ?? []).find((e) => e.step === spec.name && e.input === input.name);
    return { name: input.name, uri: external?.uri ?? '', digest: external?.digest ?? '' };
  });
}

/** The run's end (pure): its steps ended, its phase, progress and Succeeded condition, and the Event that says so. */
export function endRun(
  previous: PipelineRunStatus, phase: RunPhase, reason: string, message: string, now: Date,
): { status: PipelineRunStatus; event: RunEvent } {
  const steps = (previous.steps ?? []).map((s) => endStep(s, now));
  const status: PipelineRunStatus = {
    ...previous,
    phase,
    finishedAt: iso(now),
    progress: `${steps.filter((s) => isDone(s.phase)).length}/${steps.length}`,
    conditions: succeeded(previous.conditions, phase === 'Succeeded' ? 'True' : 'False', reason, truncate(message, 4096), now),
  };
  if (steps.length > 0) status.steps = steps;
  const eventReason = phase === 'Succeeded' ? EventReasons.RunSucceeded : phase === 'Cancelled' ? EventReasons.RunCancelled : EventReasons.RunFailed;
  return { status, event: { type: phase === 'Succeeded' ? 'Normal' : 'Warning', reason: eventReason, message: truncate(message, 1024) } };
}

function succeeded(conditions: Condition[] | undefined, value: Condition['status'], reason: string, message: string, now: Date) {
  return setCondition(conditions, { type: CONDITION_SUCCEEDED, status: value, reason, message }, now);
}
