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
import { CONDITION_SUCCEEDED, Reasons, setCondition } from '../../api/v1alpha1/conditions.ts';
import { FINAL_RUN_PHASES, LABEL_ATTEMPT, LABEL_STEP } from '../../api/v1alpha1/labels.ts';
import type {
  PipelineRun, PipelineRunStatus, ResolvedParameter, RunPhase, StepStatus,
} from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec, StepReport } from '../../agent/protocol.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import { stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { attemptOutcome, isActive, stepReportOf, truncate } from './pod-status.ts';
import { cacheKeyOf, isCacheable, type CacheKey } from './cache-key.ts';

/** How the run's start went (freeze.ts): its frozen configuration, or why there is none. */
export type RunStart =
  | { kind: 'frozen'; configuration: PipelineConfiguration; uri: string; digest: string }
  | { kind: 'waiting'; reason: string; message: string; retryAfterMs?: number }
  | { kind: 'failed'; reason: string; message: string };

export interface RunFacts {
  run: PipelineRun;
  /** Undefined only for a finished run, whose configuration is not needed any more. */
  start: RunStart | undefined;
  /** Pods controlled by the run, from the cache. */
  pods: Pod[];
  now: Date;
  /** Pods the API refused to create, by name, with its message (a second planning pass). */
  rejected?: Map<string, string>;
  /** Step reports too large for a termination message, read from the store by the shell, by Pod name. */
  manifests?: Map<string, StepReport>;
  /** Earlier results to reuse instead of running a step, by step name (cache hits, a resumed run's steps). */
  reuse?: Map<string, Reused>;
  /** Steps whose identical twin is running in another run right now: they wait for its result. */
  waitFor?: Map<string, string>;
}

/** Outputs of an earlier execution of the same step. */
export interface Reused {
  run: string;
  outputs: NonNullable<StepStatus['outputs']>;
  metrics?: Record<string, number>;
}

export interface StepLaunch {
  step: StepSpec;
  attempt: number;
  podName: string;
  /** Upstream outputs the step reads, filled once every step has been advanced. */
  inputs: InputSpec[];
  /** Set when the step's results may be reused; the shell looks the key up before creating a Pod. */
  cache?: CacheKey;
}

export interface RunEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
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

export interface RunPlan {
  status: PipelineRunStatus;
  create: StepLaunch[];
  delete: Pod[];
  events: RunEvent[];
  parameters: ResolvedParameter[];
  /** The frozen configuration, when the run has one. */
  configuration?: { spec: PipelineConfiguration; uri: string; digest: string };
  requeueAfterMs?: number;
}

const DEFAULT_BACKOFF_SECONDS = 10;
const DEFAULT_MAX_BACKOFF_SECONDS = 300;
const FINAL_STEP_PHASES = new Set(['Succeeded', 'Cached', 'Failed', 'Cancelled', 'Skipped']);
/** A step whose outputs downstream steps can use. */
export const isDone = (phase: string | undefined) => phase === 'Succeeded' || phase === 'Cached';

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const ms = (t: string | undefined) => (t ? Date.parse(t) : NaN);
const attemptOf = (pod: Pod) => Number(pod.metadata.labels?.[LABEL_ATTEMPT] ?? 0);

/** Delay before the attempt that follows `failures` failed attempts. */
export function retryDelaySeconds(step: StepSpec, failures: number): number {
  const base = step.retries?.backoffSeconds ?? DEFAULT_BACKOFF_SECONDS;
  const max = step.retries?.maxBackoffSeconds ?? DEFAULT_MAX_BACKOFF_SECONDS;
  return Math.min(max, base * 2 ** Math.max(0, failures - 1));
}

/** Collects the outputs of planning one run. */
class Planner {
  readonly create: StepLaunch[] = [];
  readonly delete: Pod[] = [];
  readonly events: RunEvent[] = [];
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
    this.events.push({ type, reason, message });
  }

  deleteActive(pods: Pod[]): void {
    for (const pod of pods) {
      if (isActive(pod) && !pod.metadata.deletionTimestamp && !this.delete.includes(pod)) this.delete.push(pod);
    }
  }

  finish(status: PipelineRunStatus, parameters: ResolvedParameter[]): RunPlan {
    const requeueAfterMs = Number.isFinite(this.wakeAt) ? Math.max(0, this.wakeAt - this.now) : undefined;
    const start = this.facts.start;
    return {
      status,
      create: this.create,
      delete: this.delete,
      events: this.events,
      parameters,
      ...(start?.kind === 'frozen' ? { configuration: { spec: start.configuration, uri: start.uri, digest: start.digest } } : {}),
      ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
    };
  }
}

export function planRun(facts: RunFacts): RunPlan {
  const { run, pods } = facts;
  const p = new Planner(facts);
  const previous = run.status ?? {};
  const status: PipelineRunStatus = { ...previous, observedGeneration: run.metadata.generation ?? 0 };

  if (previous.phase && FINAL_RUN_PHASES.has(previous.phase)) {
    // A finished run only makes sure none of its Pods keep running.
    p.deleteActive(pods);
    return p.finish(status, previous.parameters ?? []);
  }

  const end = (phase: RunPhase, reason: string, message: string, steps: StepStatus[] = status.steps ?? []) =>
    endRun(p, status, steps, phase, reason, message);

  const start: RunStart = facts.start ?? { kind: 'waiting', reason: Reasons.Pending, message: 'configuration not loaded yet', retryAfterMs: 0 };
  if (start.kind !== 'frozen') {
    if (run.spec.cancel) return end('Cancelled', Reasons.Cancelled, 'cancelled before it started');
    if (start.kind === 'failed') return end('Failed', start.reason, start.message);
    status.phase = 'Pending';
    status.conditions = succeeded(status.conditions, 'Unknown', start.reason, truncate(start.message, 4096), facts.now);
    if (start.retryAfterMs !== undefined) p.wake(p.now + start.retryAfterMs);
    return p.finish(status, []);
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

  const specs = configuration.spec.steps;
  const previousSteps = new Map((previous.steps ?? []).map((s) => [s.name, s]));
  const podsByStep = new Map<string, Pod[]>();
  for (const pod of pods) {
    const step = pod.metadata.labels?.[LABEL_STEP] ?? '';
    podsByStep.set(step, [...(podsByStep.get(step) ?? []), pod]);
  }
  const steps = specs.map((spec) => advanceStep(p, run, spec, previousSteps.get(spec.name), podsByStep.get(spec.name) ?? []));
  status.steps = steps;
  // An adopted Pod means the run started, even if the status write that said so was lost.
  const firstStart = Math.min(...steps.map((s) => ms(s.startedAt)).filter(Number.isFinite));
  if (!status.startedAt && Number.isFinite(firstStart)) status.startedAt = iso(new Date(firstStart));

  if (run.spec.cancel) return end('Cancelled', Reasons.Cancelled, 'cancelled (spec.cancel is true)', steps);

  const timeoutSeconds = run.spec.timeoutSeconds ?? configuration.spec.timeoutSeconds;
  if (timeoutSeconds && status.startedAt) {
    const deadline = ms(status.startedAt) + timeoutSeconds * 1000;
    if (deadline <= p.now) return end('Failed', Reasons.TimedOut, `run exceeded its timeout of ${timeoutSeconds}s`, steps);
    p.wake(deadline);
  }

  const failStep = (failed: StepStatus) =>
    end('Failed', Reasons.Failed, `step "${failed.name}" failed: ${failed.message ?? failed.reason ?? 'unknown error'}`, steps);
  const failed = steps.find((s) => s.phase === 'Failed');
  if (failed) return failStep(failed);

  launchReadySteps(p, run, configuration, steps, status);
  // A launch the API server rejected fails its step for good, and so the run.
  const rejected = steps.find((s) => s.phase === 'Failed');
  if (rejected) return failStep(rejected);

  const doneCount = steps.filter((s) => isDone(s.phase)).length;
  status.progress = `${doneCount}/${steps.length}`;
  if (doneCount === steps.length) {
    const cached = steps.filter((s) => s.phase === 'Cached').length;
    return end('Succeeded', Reasons.Succeeded, `${steps.length === 1 ? 'its only step' : `all ${steps.length} steps`} succeeded${cached ? ` (${cached} from cache)` : ''}`, steps);
  }

  const running = steps.filter((s) => s.phase === 'Running').map((s) => s.name);
  const retrying = steps.filter((s) => s.phase === 'Retrying').map((s) => s.name);
  const twin = steps.find((s) => s.phase === 'Pending' && s.reason === 'WaitingForCache');
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

/** Moves one step forward from what its Pods say. */
function advanceStep(p: Planner, run: PipelineRun, spec: StepSpec, previous: StepStatus | undefined, pods: Pod[]): StepStatus {
  const step: StepStatus = previous ? { ...previous } : { name: spec.name, phase: 'Pending', attempts: 0 };
  const attempts = step.attempts ?? 0;

  if (FINAL_STEP_PHASES.has(step.phase)) {
    if (step.phase !== 'Succeeded') p.deleteActive(pods);
    return step;
  }

  // Adopt a Pod that an earlier reconcile created but could not record (crash, conflict).
  const newest = pods.reduce((max, pod) => Math.max(max, attemptOf(pod)), 0);
  if (newest > attempts) {
    const pod = pods.find((x) => attemptOf(x) === newest)!;
    Object.assign(step, { phase: 'Running', attempts: newest, podName: pod.metadata.name, retryAt: undefined });
    step.startedAt ??= pod.metadata.creationTimestamp ?? iso(p.facts.now);
  }
  // Pods of earlier attempts must not run on (a timed-out attempt's Pod, say).
  p.deleteActive(pods.filter((pod) => attemptOf(pod) < (step.attempts ?? 0) || (step.phase === 'Retrying' && attemptOf(pod) === step.attempts)));

  if (step.phase === 'Running') {
    const current = step.attempts ?? 0;
    const podName = stepPodName(run.metadata.name, spec.name, current);
    const pod = pods.find((x) => attemptOf(x) === current);
    if (!pod) {
      const rejection = p.facts.rejected?.get(podName);
      if (rejection) return failAttempt(p, spec, step, Reasons.PodRejected, rejection, false);
      // Created by an earlier pass but not in the cache yet, or deleted by someone: ensure it exists.
      p.create.push({ step: spec, attempt: current, podName, inputs: [] });
      return step;
    }
    const outcome = attemptOutcome(pod);
    if (outcome.state === 'succeeded') {
      const report = p.facts.manifests?.get(pod.metadata.name) ?? stepReportOf(pod);
      const published = new Map((report?.outputs ?? []).map((o) => [o.name, o]));
      const missing = (spec.outputs ?? []).filter((o) => !published.has(o.name)).map((o) => o.name);
      if (missing.length > 0) {
        return failAttempt(p, spec, step, Reasons.MissingOutput, `the step's Pod succeeded but reported no ${missing.map((m) => `"${m}"`).join(', ')} output`, false);
      }
      Object.assign(step, {
        phase: 'Succeeded',
        finishedAt: outcome.finishedAt ?? iso(p.facts.now),
        reason: undefined,
        // Why the cache could not serve this step stays on record.
        message: step.message?.startsWith('cache miss:') ? step.message : undefined,
        outputs: (spec.outputs ?? []).map((o) => published.get(o.name)!),
        metrics: report?.metrics && Object.keys(report.metrics).length > 0 ? report.metrics : undefined,
      });
      if (step.outputs?.length === 0) delete step.outputs;
      p.event('Normal', 'StepSucceeded', `step "${spec.name}" succeeded`);
      return step;
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

function failAttempt(
  p: Planner, spec: StepSpec, step: StepStatus, reason: string, message: string, retryable: boolean, finishedAt?: string,
): StepStatus {
  const attempts = step.attempts ?? 1;
  const limit = spec.retries?.limit ?? 0;
  step.finishedAt = finishedAt ?? iso(p.facts.now);
  step.reason = reason;
  if (retryable && attempts <= limit) {
    const retryAt = p.now + retryDelaySeconds(spec, attempts) * 1000;
    // Millisecond precision: a retry must not start before its backoff has passed.
    Object.assign(step, { phase: 'Retrying', retryAt: new Date(retryAt).toISOString(), message: truncate(`attempt ${attempts} ${message}`, 1024) });
    p.wake(retryAt);
    p.event('Warning', 'StepRetrying', truncate(`step "${spec.name}" attempt ${attempts} failed (${message}); retrying at ${step.retryAt}`, 1024));
    return step;
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  Object.assign(step, { phase: 'Failed', retryAt: undefined, message: truncate(`${message}${tries}`, 1024) });
  p.event('Warning', 'StepFailed', truncate(`step "${spec.name}" failed${tries}: ${message}`, 1024));
  return step;
}

/**
 * Starts Pending steps whose dependencies are done and Retrying steps whose time came, within
 * parallelism. A step with an earlier result to reuse is Cached instead, which may make its
 * dependants ready in turn, so this repeats until nothing changes.
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
      const inputs = inputsOf(spec, byName, configuration);
      const cache = step.phase === 'Pending' && isCacheable(spec, run.spec.cachePolicy) ? cacheKeyOf(spec, parameters, inputs) : undefined;
      const reused = p.facts.reuse?.get(spec.name);
      if (step.phase === 'Pending' && reused) {
        Object.assign(step, {
          phase: 'Cached', cachedFrom: reused.run, outputs: reused.outputs, metrics: reused.metrics,
          cacheKey: cache?.key, startedAt: iso(p.facts.now), finishedAt: iso(p.facts.now), reason: undefined, message: undefined,
        });
        if (!step.outputs?.length) delete step.outputs;
        p.event('Normal', 'StepCached', `step "${spec.name}" reused the results of run "${reused.run}"`);
        changed = true;
        continue;
      }
      const twin = p.facts.waitFor?.get(spec.name);
      if (step.phase === 'Pending' && twin) {
        Object.assign(step, { reason: 'WaitingForCache', message: `an identical step is running in run "${twin}"; waiting for its result` });
        p.wake(p.now + 2000);
        continue;
      }
      if (slots <= 0) continue;
      const attempt = (step.attempts ?? 0) + 1;
      const podName = stepPodName(run.metadata.name, spec.name, attempt);
      Object.assign(step, { phase: 'Running', attempts: attempt, podName, retryAt: undefined, reason: undefined, message: undefined });
      if (cache) step.cacheKey = cache.key;
      step.startedAt ??= iso(p.facts.now);
      status.startedAt ??= iso(p.facts.now);
      const rejection = p.facts.rejected?.get(podName);
      if (rejection) {
        failAttempt(p, spec, step, Reasons.PodRejected, rejection, false);
        continue;
      }
      p.create.push({ step: spec, attempt, podName, inputs, ...(cache ? { cache } : {}) });
      p.event('Normal', 'StepStarted', `step "${spec.name}" started (attempt ${attempt})`);
      slots--;
    }
  }
  // A Pod re-created for a running attempt (see advanceStep) needs its inputs too.
  for (const launch of p.create) if (launch.inputs.length === 0) launch.inputs = inputsOf(launch.step, byName, configuration);
  if (status.startedAt === undefined && steps.some((s) => s.phase === 'Cached')) status.startedAt = iso(p.facts.now);
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

function endRun(
  p: Planner, status: PipelineRunStatus, steps: StepStatus[], phase: RunPhase, reason: string, message: string,
): RunPlan {
  const now = iso(p.facts.now);
  const ended = steps.map((s): StepStatus => {
    if (s.phase === 'Running' || s.phase === 'Retrying') return { ...s, phase: 'Cancelled', retryAt: undefined, finishedAt: now };
    if (s.phase === 'Pending') return { ...s, phase: 'Skipped' };
    return s;
  });
  // Stop whatever still runs, start nothing new, and wait for nothing.
  p.create.splice(0);
  p.sleep();
  p.deleteActive(p.facts.pods);
  const doneCount = ended.filter((s) => isDone(s.phase)).length;
  Object.assign(status, {
    phase,
    finishedAt: now,
    steps: ended.length > 0 ? ended : status.steps,
    progress: `${doneCount}/${ended.length}`,
    conditions: succeeded(status.conditions, phase === 'Succeeded' ? 'True' : 'False', reason, truncate(message, 4096), p.facts.now),
  });
  p.event(phase === 'Succeeded' ? 'Normal' : 'Warning', `Run${phase}`, truncate(message, 1024));
  return p.finish(status, status.parameters ?? []);
}

function succeeded(conditions: Condition[] | undefined, value: Condition['status'], reason: string, message: string, now: Date) {
  return setCondition(conditions, { type: CONDITION_SUCCEEDED, status: value, reason, message }, now);
}
