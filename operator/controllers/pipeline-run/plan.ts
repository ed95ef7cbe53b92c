// Decides, from gathered facts only (pure, no I/O), what a PipelineRun should look like now
// and what must happen to get there: the new status, the Pods to create and delete, the events
// to emit, and when to look again. reconcile.ts gathers the facts and applies the plan.
//
// A step moves through these phases (the attempt counter grows on each launch):
//
//   Pending ──deps done, when true, slot free──► Running ──Pod Succeeded──► Succeeded
//      │                                          │  ▲
//      │ when false, or a step it     Pod Failed, │  │ retryAt reached, slot free
//      │ needs did not succeed      retries left  ▼  │
//      ▼                                         Retrying
//   Skipped                     Pod Failed, no retries left ─────────────► Failed
//
// A forEach step is Running while its items run (fan-out.ts), then Succeeded or Failed.
// The main steps end when each is final, or early: at a Failed step (failurePolicy FailFast),
// at the run's timeout, or at spec.cancel; then Running and Retrying steps become Cancelled
// (their Pods are deleted) and Pending ones Skipped. Then the finally steps run, whatever the
// outcome (status.outcome holds it meanwhile), and the run takes the main steps' outcome
// (Failed if a finally step failed after the main steps succeeded). Pods have deterministic
// names, so a launch that is planned twice creates one Pod. docs/control-flow.md has the rules.
import type { Condition } from '../../api/v1alpha1/common.ts';
import { CONDITION_SUCCEEDED, EventReasons, Reasons, setCondition } from '../../api/v1alpha1/conditions.ts';
import { LABEL_ATTEMPT, LABEL_STEP } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun, PipelineRunStatus, ResolvedParameter, RunPhase, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec } from '../../agent/protocol.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import { stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { evaluateCondition } from '../pipeline/expressions.ts';
import { conditionEnvironment, conditionValues } from '../pipeline/condition-environment.ts';
import { consumedSteps } from '../pipeline/step-references.ts';
import { digestOf } from '../../configuration/canonical-json.ts';
import { cacheKeyOf, isCacheable, type CacheKey } from './cache-key.ts';
import { collectedResult } from './collection.ts';
import { advanceFanOut, resolveItems } from './fan-out.ts';
import { Planner, activePods, type RunFacts, type RunPlan, type RunEvent, type StepLaunch } from './planner.ts';
import { attemptOutcome, truncate } from './pod-status.ts';
import { checkResults } from './results.ts';
import { DEFAULT_FAILURE_SETTINGS, decideRetry } from './retry-policy.ts';
import {
  FINAL_STEP_PHASES, adoptAttempt, endStep, failStep, isDone, iso, pendingStep, retryStep, reuseStep, skipStep, startAttempt, startFanOut,
  succeedStep, waitForTwin, type AttemptFailure, type Reused,
} from './transitions.ts';

export { activePods, isDone, type Reused };
export type { CacheLookup, CacheView, CheckedReport, RunEvent, RunFacts, RunPlan, StepLaunch } from './planner.ts';

/**
 * One Event per type and reason for a pass: a pass that starts 199 steps says so once, naming
 * them, instead of writing 199 Events. Each Event is a write to the API server, as costly as a
 * Pod's, and the run's status already holds every step's story.
 */
export function collapseEvents(events: RunEvent[]): RunEvent[] {
  const groups = Map.groupBy(events, (e) => `${e.type}/${e.reason}`);
  return [...groups.values()].map((group) => {
    const first = group[0]!;
    if (group.length === 1) return first;
    return { type: first.type, reason: first.reason, message: truncate(`${group.length} steps: ${group.map((e) => e.message).join('; ')}`, 1024) };
  });
}

/**
 * Most Pods one pass starts (more than a Pipeline has steps, fewer than a fan-out has items): a
 * pass of a 10,000-item forEach writes its status and yields the worker after this many
 * creates instead of spending minutes of API budget before anything is recorded.
 */
export const MAX_LAUNCHES_PER_PASS = 250;

/** While a step waits for its twin in another run: how often to look again. */
const TWIN_POLL_MS = 2000;

const ms = (t: string | undefined) => (t ? Date.parse(t) : NaN);
const attemptOf = (pod: Pod) => Number(pod.metadata.labels?.[LABEL_ATTEMPT] ?? 0);

type Outcome = NonNullable<PipelineRunStatus['outcome']>;

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

  const mainSpecs = configuration.spec.steps;
  const finallySpecs = configuration.spec.finally ?? [];
  const previousSteps = new Map((previous.steps ?? []).map((s) => [s.name, s]));
  // NOTE: grouped in one pass over the Pods: a forEach step has thousands.
  const podsByStep = Map.groupBy(pods, (pod) => pod.metadata.labels?.[LABEL_STEP] ?? '');
  const graph: RunGraph = {
    run, configuration, specs: [...mainSpecs, ...finallySpecs], main: mainSpecs.length, podsByStep, collections: new Map(facts.collections),
    outcome: () => status.outcome,
    steps: [...mainSpecs, ...finallySpecs].map((spec) => {
      const step = previousSteps.get(spec.name) ?? pendingStep(spec.name);
      // A forEach step's items are advanced with the launches (they share the free slots).
      return spec.forEach ? step : advanceStep(p, run, spec, step, podsByStep.get(spec.name) ?? []);
    }),
  };
  const steps = graph.steps;
  status.steps = steps;
  // An adopted Pod means the run started, even if the status write that said so was lost.
  const firstStart = Math.min(...steps.map((s) => ms(s.startedAt)).filter(Number.isFinite));
  if (!status.startedAt && Number.isFinite(firstStart)) status.startedAt = iso(new Date(firstStart));

  const failFast = (run.spec.failurePolicy ?? configuration.spec.failurePolicy ?? 'FailFast') === 'FailFast';
  const mainSteps = () => steps.slice(0, graph.main);
  const earlyEnd = (): Outcome | undefined => {
    if (run.spec.cancel) return { phase: 'Cancelled', reason: Reasons.Cancelled, message: 'cancelled (spec.cancel is true)' };
    const timeoutSeconds = run.spec.timeoutSeconds ?? configuration.spec.timeoutSeconds;
    if (timeoutSeconds && status.startedAt) {
      const deadline = ms(status.startedAt) + timeoutSeconds * 1000;
      if (deadline <= p.now) return { phase: 'Failed', reason: Reasons.TimedOut, message: `run exceeded its timeout of ${timeoutSeconds}s` };
      p.wake(deadline);
    }
    const failed = failFast ? mainSteps().find((s) => s.phase === 'Failed') : undefined;
    return failed ? { phase: 'Failed', reason: Reasons.Failed, message: stepFailedMessage(failed) } : undefined;
  };

  let outcome = status.outcome;
  if (!outcome) {
    outcome = earlyEnd();
    if (!outcome) {
      launchReadySteps(p, graph, 0, graph.main);
      if (!status.startedAt && (p.create.length > 0 || steps.some((s) => FINAL_STEP_PHASES.has(s.phase)))) status.startedAt = iso(facts.now);
      // Starting steps may have failed one (a condition that cannot be evaluated).
      outcome = earlyEnd() ?? (mainSteps().every((s) => FINAL_STEP_PHASES.has(s.phase)) ? mainOutcome(mainSteps()) : undefined);
    }
    if (outcome && finallySpecs.length === 0) return end(outcome.phase, outcome.reason, outcome.message);
    if (outcome) endMainSteps(p, graph, outcome);
  }
  if (outcome) {
    status.outcome = outcome;
    status.startedAt ??= iso(facts.now);
    launchReadySteps(p, graph, graph.main, steps.length);
    if (steps.slice(graph.main).every((s) => FINAL_STEP_PHASES.has(s.phase))) {
      const failedFinally = steps.slice(graph.main).find((s) => s.phase === 'Failed');
      if (failedFinally && outcome.phase === 'Succeeded') return end('Failed', Reasons.FinallyFailed, `the main steps succeeded, but finally ${stepFailedMessage(failedFinally)}`);
      return end(outcome.phase, outcome.reason, outcome.message);
    }
  }

  const doneCount = steps.filter((s) => isDone(s.phase)).length;
  status.progress = `${doneCount}/${steps.length}`;
  const running = steps.filter((s) => s.phase === 'Running').map((s) => (s.items ? `${s.name} (${s.items.succeeded + s.items.failed}/${s.items.total} items)` : s.name));
  const retrying = steps.filter((s) => s.phase === 'Retrying').map((s) => s.name);
  const twin = steps.find((s) => s.phase === 'Pending' && s.reason === Reasons.WaitingForCache);
  const waiting = twin ? `step "${twin.name}": ${twin.message ?? 'waiting for an identical step'}` : undefined;
  if (outcome) {
    status.phase = 'Running';
    const message = truncate(`${outcome.phase === 'Succeeded' ? 'the main steps succeeded' : outcome.message}; running finally steps${running.length ? `: ${running.join(', ')}` : ''}`, 1024);
    status.conditions = succeeded(status.conditions, 'Unknown', Reasons.RunningFinally, message, facts.now);
  } else if (status.startedAt) {
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

/** The steps of a run, main then finally, as one pass sees and changes them. */
interface RunGraph {
  run: PipelineRun;
  configuration: PipelineConfiguration;
  specs: StepSpec[];
  steps: StepStatus[];
  /** How many of them are main steps (the rest are finally steps). */
  main: number;
  podsByStep: Map<string, Pod[]>;
  collections: RunFacts['collections'];
  /** How the main steps ended, once they have. */
  outcome: () => Outcome | undefined;
}

/** How the main steps ended once each is final: Failed if one failed (failurePolicy Continue), else Succeeded. */
function mainOutcome(steps: StepStatus[]): Outcome {
  const failed = steps.filter((s) => s.phase === 'Failed');
  if (failed.length > 0) {
    const others = failed.length > 1 ? ` (and ${failed.length - 1} more: ${failed.slice(1).map((s) => s.name).join(', ')})` : '';
    return { phase: 'Failed', reason: Reasons.Failed, message: truncate(`${stepFailedMessage(failed[0]!)}${others}`, 4096) };
  }
  const cached = steps.filter((s) => s.phase === 'Cached').length;
  const skipped = steps.filter((s) => s.phase === 'Skipped').length;
  const ran = steps.length - skipped;
  const what = skipped ? `${ran} of ${steps.length} steps succeeded, ${skipped} skipped` : `${steps.length === 1 ? 'its only step' : `all ${steps.length} steps`} succeeded`;
  return { phase: 'Succeeded', reason: Reasons.Succeeded, message: `${what}${cached ? ` (${cached} from cache)` : ''}` };
}

/** The main steps ended early or at last: stop what still runs of them before the finally steps start. */
function endMainSteps(p: Planner, graph: RunGraph, outcome: Outcome): void {
  const main = new Set(graph.specs.slice(0, graph.main).map((s) => s.name));
  for (let i = p.create.length - 1; i >= 0; i--) if (main.has(p.create[i]!.step.name)) p.create.splice(i, 1);
  for (const name of main) p.deleteActive(graph.podsByStep.get(name) ?? []);
  for (let i = 0; i < graph.main; i++) graph.steps[i] = endStep(graph.steps[i]!, p.facts.now);
  p.event(outcome.phase === 'Succeeded' ? 'Normal' : 'Warning', EventReasons.RunningFinally, `${outcome.message}; running finally steps`);
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
    const settings = p.facts.failureSettings ?? DEFAULT_FAILURE_SETTINGS;
    const outcome = attemptOutcome(pod, { now: p.facts.now, timeouts: settings });
    if (outcome.state === 'succeeded') {
      const report = p.facts.reports.get(pod.metadata.name);
      if (report && 'refused' in report) return failAttempt(p, spec, step, Reasons.InvalidStepReport, report.refused, false);
      const published = new Map((report?.outputs ?? []).map((o) => [o.name, o]));
      const missing = (spec.outputs ?? []).filter((o) => !published.has(o.name)).map((o) => o.name);
      if (missing.length > 0) {
        return failAttempt(p, spec, step, Reasons.MissingOutput, `the step's Pod succeeded but reported no ${missing.map((m) => `"${m}"`).join(', ')} output`, false);
      }
      const checked = checkResults(spec.results, report?.results);
      if ('error' in checked) return failAttempt(p, spec, step, Reasons.InvalidResult, checked.error, false);
      p.event('Normal', EventReasons.StepSucceeded, `step "${spec.name}" succeeded`);
      return succeedStep(step, outcome.finishedAt ?? iso(p.facts.now), (spec.outputs ?? []).map((o) => published.get(o.name)!), report?.metrics, checked.results);
    }
    if (outcome.state === 'failed') {
      // A Pod stuck Pending (an image it cannot pull, no node to run it) is still there: it goes.
      p.deleteActive([pod]);
      const failure: AttemptFailure = { cause: outcome.cause, ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}) };
      return failAttempt(p, spec, step, outcome.reason, outcome.message, true, outcome.finishedAt, failure);
    }
    if (outcome.failsAt) p.wake(ms(outcome.failsAt));
    // NOTE: the timeout counts the user's container only, from when it started running (image
    // pulls and input downloads do not); the Pod's activeDeadlineSeconds is a backstop (pod-spec.ts).
    const timeoutSeconds = spec.timeoutSeconds ?? settings.defaultStepTimeoutSeconds;
    if (timeoutSeconds && outcome.stepRunningSince) {
      const deadline = ms(outcome.stepRunningSince) + timeoutSeconds * 1000;
      if (deadline <= p.now) {
        p.deleteActive([pod]);
        return failAttempt(p, spec, step, Reasons.TimedOut, `exceeded its timeout of ${timeoutSeconds}s`, true, undefined, { cause: 'DeadlineExceeded' });
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

/**
 * A failed attempt: Retrying if retry-policy.ts says so for its cause (an infrastructure loss
 * without using retries.limit), else Failed. `retryable` false: a failure no attempt can fix.
 */
function failAttempt(
  p: Planner, spec: StepSpec, step: StepStatus, reason: string, message: string, retryable: boolean, finishedAt?: string, failure?: AttemptFailure,
): StepStatus {
  const attempts = step.attempts ?? 1;
  const finished = finishedAt ?? iso(p.facts.now);
  const infrastructureRetries = step.infrastructureRetries ?? 0;
  const settings = p.facts.failureSettings ?? DEFAULT_FAILURE_SETTINGS;
  const decision = retryable ? decideRetry(spec.retries, failure?.cause ?? 'Error', attempts, infrastructureRetries, settings) : undefined;
  if (decision?.retry) {
    const retryAt = new Date(p.now + decision.delaySeconds * 1000);
    p.wake(retryAt.getTime());
    const free = decision.consumesRetry ? '' : ' (an infrastructure loss: retries.limit not used)';
    p.event('Warning', EventReasons.StepRetrying, `step "${spec.name}" attempt ${attempts} failed (${message}); retrying at ${retryAt.toISOString()}${free}`);
    return retryStep(step, reason, message, finished, retryAt, { ...failure, ...(decision.consumesRetry ? {} : { infrastructureRetries: infrastructureRetries + 1 }) });
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed${tries}: ${message}${decision ? ` (${decision.why})` : ''}`);
  return failStep(step, reason, `${message}${tries}`, finished, failure);
}

/**
 * Starts the steps of specs[from, to) that are ready: Pending steps whose dependencies are
 * final, and Retrying steps whose time came, within parallelism. A Pending step whose condition
 * is false, or that needs a step that did not succeed, is Skipped; one with an earlier result to
 * reuse (the resumed run's, or the step cache's) is Cached. Either may make its dependants ready
 * in turn, so this repeats until nothing changes: one plan follows them down the whole graph.
 * Running forEach steps start their items here too, from the same free slots.
 */
function launchReadySteps(p: Planner, graph: RunGraph, from: number, to: number): void {
  const { run, configuration, specs, steps } = graph;
  const byName = new Map(steps.map((s) => [s.name, s]));
  const parameters = new Map(configuration.parameters.map((x) => [x.name, x.value]));
  // A forEach step holds one slot per running item (as its status counted them last).
  const running = steps.reduce((n, s) => n + (s.phase !== 'Running' ? 0 : s.items ? s.items.running : 1), 0);
  const allowed = (run.spec.parallelism ?? Infinity) - running;
  const slots = { free: Math.min(allowed, MAX_LAUNCHES_PER_PASS) };
  const fannedOut = new Set<string>();
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = from; i < to; i++) {
      const spec = specs[i]!;
      const step = steps[i]!;
      const set = (next: StepStatus) => { steps[i] = next; byName.set(next.name, next); };
      if (spec.forEach && step.phase === 'Running') {
        if (fannedOut.has(spec.name)) continue;
        fannedOut.add(spec.name);
        set(fanOut(p, graph, spec, step, byName, parameters, slots));
        if (FINAL_STEP_PHASES.has(steps[i]!.phase)) changed = true;
        continue;
      }
      const ready =
        (step.phase === 'Pending' && (spec.dependsOn ?? []).every((d) => FINAL_STEP_PHASES.has(byName.get(d)?.phase ?? ''))) ||
        (step.phase === 'Retrying' && ms(step.retryAt) <= p.now);
      if (!ready) continue;
      const fresh = step.phase === 'Pending';
      if (fresh) {
        const gate = gateOf(graph, spec, byName, i >= graph.main);
        if (gate) {
          if (gate.fail) {
            p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed: ${gate.message}`);
            set(failStep(step, gate.reason, gate.message, iso(p.facts.now)));
          } else {
            set(skipStep(step, gate.reason, gate.message, p.facts.now));
          }
          changed = true;
          continue;
        }
      }
      const inputs = inputsOf(spec, byName, configuration, graph.collections);
      const variables = variablesFor(graph, spec, byName);
      const cache = fresh && p.facts.cache && isCacheable(spec, run.spec.cachePolicy) ? cacheKeyOf(spec, parameters, inputs, variables) : undefined;
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
      if (spec.forEach) {
        const resolved = resolveItems(spec, parameters, variables.results ?? new Map());
        if ('error' in resolved) {
          p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed: ${resolved.error}`);
          set(failStep(step, Reasons.InvalidForEach, resolved.error, iso(p.facts.now)));
          changed = true;
          continue;
        }
        set(startFanOut(step, resolved.items.length, p.facts.now));
        fannedOut.add(spec.name);
        set(fanOut(p, graph, spec, steps[i]!, byName, parameters, slots, resolved.items));
        changed = true;
        continue;
      }
      if (slots.free <= 0) continue;
      if (cache) p.lookups.push('miss'); // counted when the step runs, not on each pass it waits for a slot
      const attempt = (step.attempts ?? 0) + 1;
      const podName = stepPodName(run.metadata.name, spec.name, attempt);
      set(startAttempt(step, attempt, podName, p.facts.now, cache?.key));
      p.create.push({ step: spec, attempt, podName, inputs, variables, ...(cache ? { cache } : {}) });
      p.event('Normal', EventReasons.StepStarted, `step "${spec.name}" started (attempt ${attempt})`, spec.name);
      slots.free--;
    }
  }
  // The cap, not parallelism, stopped this pass: the next one starts more, after this one's status is written.
  if (slots.free <= 0 && allowed > MAX_LAUNCHES_PER_PASS) p.wake(p.now);
  // A Pod re-created for a running attempt (see advanceStep) needs its inputs and variables too.
  for (const launch of p.create) {
    if (launch.variables === undefined) launch.variables = variablesFor(graph, launch.step, byName);
    if (launch.inputs.length === 0) launch.inputs = inputsOf(launch.step, byName, configuration, graph.collections);
  }
}

/** The items of a running forEach step, advanced (fan-out.ts); `items` when the step starts in this pass. */
function fanOut(
  p: Planner, graph: RunGraph, spec: StepSpec, step: StepStatus, byName: Map<string, StepStatus>, parameters: Map<string, string>, slots: { free: number },
  resolvedItems?: unknown[],
): StepStatus {
  const variables = variablesFor(graph, spec, byName);
  // NOTE: the items were resolved when the step started, from values that cannot change since.
  const resolved = resolvedItems ? { items: resolvedItems } : resolveItems(spec, parameters, variables.results ?? new Map());
  const items = 'items' in resolved ? resolved.items : [];
  return advanceFanOut(p, graph.run, {
    spec, step, items, slots, variables, collections: graph.collections,
    pods: graph.podsByStep.get(spec.name) ?? [],
    inputs: inputsOf(spec, byName, graph.configuration, graph.collections),
  });
}

/**
 * Whether a ready step is skipped or failed before it starts: a dependency failed (failurePolicy
 * Continue) or was skipped other than by its own condition; a step whose outputs or results it
 * uses did not succeed; or its condition is false or cannot be evaluated.
 */
function gateOf(graph: RunGraph, spec: StepSpec, byName: Map<string, StepStatus>, isFinally: boolean): { reason: string; message: string; fail?: boolean } | undefined {
  for (const name of spec.dependsOn ?? []) {
    const dep = byName.get(name);
    if (dep?.phase === 'Failed' || dep?.phase === 'Cancelled') return { reason: Reasons.UpstreamFailed, message: `step "${name}" it depends on ${dep.phase === 'Failed' ? 'failed' : 'was cancelled'}` };
    if (dep?.phase === 'Skipped' && dep.reason !== Reasons.ConditionFalse) return { reason: Reasons.UpstreamSkipped, message: `step "${name}" it depends on was skipped` };
  }
  for (const name of consumedSteps(spec)) {
    const used = byName.get(name);
    if (!isDone(used?.phase)) {
      const what = used?.phase === 'Skipped' ? 'was skipped' : used?.phase === 'Failed' ? 'failed' : 'did not succeed';
      return { reason: isFinally || used?.phase === 'Skipped' ? Reasons.UpstreamSkipped : Reasons.UpstreamFailed, message: `it uses the outputs or results of step "${name}", which ${what}` };
    }
  }
  if (!spec.when) return undefined;
  const spec0 = graph.configuration.spec;
  const env = conditionEnvironment(spec0, spec.name);
  const values = conditionValues(env, graph.configuration.parameters, (name) => storedResults(graph, name, byName));
  const result = evaluateCondition(spec.when, env, values);
  if ('error' in result) return { reason: Reasons.ConditionError, message: truncate(`when "${spec.when}": ${result.error}`, 1024), fail: true };
  return result.value ? undefined : { reason: Reasons.ConditionFalse, message: truncate(`when "${spec.when}" is false`, 1024) };
}

/** A step's stored results: its status's, or each collected item's for a forEach step. */
function storedResults(graph: RunGraph, name: string, byName: Map<string, StepStatus>): Record<string, string> | Array<Record<string, string> | undefined> | undefined {
  const step = byName.get(name);
  if (!isDone(step?.phase)) return undefined;
  const collection = step!.collection ? graph.collections.get(name) : undefined;
  if (collection) return collection.items.map((item) => item.results);
  return step!.results;
}

/** The $(steps.…), $(run.…) variables of a step that is about to start. */
function variablesFor(graph: RunGraph, spec: StepSpec, byName: Map<string, StepStatus>): NonNullable<StepLaunch['variables']> {
  const results = new Map<string, string>();
  for (const name of consumedSteps(spec)) {
    const producer = graph.specs.find((s) => s.name === name);
    const step = byName.get(name);
    if (!producer || !isDone(step?.phase)) continue;
    const collection = step!.collection ? graph.collections.get(name) : undefined;
    for (const declared of producer.results ?? []) {
      const text = collection ? collectedResult(collection, declared) : step!.results?.[declared.name];
      if (text !== undefined) results.set(`${name}.${declared.name}`, text);
    }
  }
  const isFinally = graph.specs.indexOf(spec) >= graph.main;
  const outcome = graph.outcome();
  return {
    ...(results.size > 0 ? { results } : {}),
    ...(isFinally && outcome
      ? { run: { status: outcome.phase, failedSteps: graph.steps.slice(0, graph.main).filter((s) => s.phase === 'Failed').map((s) => s.name) } }
      : {}),
  };
}

/** Asks the step cache for a key, counting a hit or a wait (a miss is counted when the step starts); a resumed result is not a lookup. */
function lookUp(p: Planner, cache: CacheKey | undefined, spec: StepSpec): { hit: Reused } | { runningIn: string } | undefined {
  if (!cache || !p.facts.cache) return undefined;
  const answer = p.facts.cache.lookup(cache.key, spec);
  if (!('miss' in answer)) p.lookups.push('hit' in answer ? 'hit' : 'wait');
  return 'miss' in answer ? undefined : answer;
}

/**
 * Where each input of a step comes from: an upstream step's published output (every item's, as
 * a collection, from a forEach step), or a pinned external input.
 */
function inputsOf(spec: StepSpec, steps: Map<string, StepStatus>, configuration: PipelineConfiguration, collections: RunFacts['collections']): InputSpec[] {
  return (spec.inputs ?? []).map((input) => {
    if (input.from) {
      const { step, output: name } = input.from;
      const producer = steps.get(step);
      // NOTE: validation guarantees the producer is upstream, and the gate that it succeeded.
      if (producer?.collection) {
        // The cache key takes the items' digests, not the collection's: its URIs differ from run to run.
        const items = collections.get(step)?.items.map((item) => [item.index, item.outputs.find((o) => o.name === name)?.digest ?? null]);
        return {
          name: input.name, uri: producer.collection.uri, digest: producer.collection.digest, collection: true, output: name,
          ...(items ? { contentDigest: digestOf(items) } : {}),
        };
      }
      const output = producer?.outputs?.find((o) => o.name === name);
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
