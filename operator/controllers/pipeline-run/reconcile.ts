// Reconciles one PipelineRun: gather (run and Pods from the caches, the frozen configuration,
// oversized step reports) → plan (pure) → apply (create Pods, write status, delete Pods, emit
// events). Safe to stop at any line and run again: the configuration is written once, Pod
// names are deterministic and status writes carry the resourceVersion.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { CONDITION_MODELS_REGISTERED, Reasons, findCondition } from '../../api/v1alpha1/conditions.ts';
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepReport } from '../../agent/protocol.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { Pod } from '../../kube/pod.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { digestOf } from '../../configuration/canonical-json.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import { errorMessage } from '../../kube/errors.ts';
import { createStepPods, deletePods, statusChanged, writeRunStatus } from './apply.ts';
import { maxAgeMs } from './cache-key.ts';
import { freezeRun, type FreezeDeps } from './freeze.ts';
import { recordsOf, recordsDigest } from './records.ts';
import { collapseEvents, planRun, type Reused, type RunFacts, type RunPlan } from './plan.ts';
import { ensureModelVersions, registrationPending, reservedVersions, reserveModelVersions, setModelsRegistered } from './registration.ts';
import type { StepCache } from './step-cache.ts';
import type { AgentSettings } from './pod-spec.ts';
import { attemptOutcome, terminationMessageOf, truncate } from './pod-status.ts';

export interface PipelineRunDeps {
  client: KubeClient;
  runs: Cache<PipelineRun>;
  pods: Cache<Pod>;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  freeze: FreezeDeps;
  store: ArtifactStore;
  agent: AgentSettings;
  stepCache: StepCache;
  modelVersions: Cache<ModelVersion>;
  metadata: MetadataStore;
  issuedVersions: Map<string, number>;
}

export function runKeyOfPod(pod: Pod): string | undefined {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'PipelineRun' && o.apiVersion === API_VERSION);
  return owner ? `${pod.metadata.namespace}/${owner.name}` : undefined;
}

/** The Pipeline a run starts from, as a cache key (none for a reproduction). */
export const pipelineKeysOfRun = (run: PipelineRun): string[] =>
  run.spec.pipelineRef ? [`${run.metadata.namespace}/${run.spec.pipelineRef.name}`] : [];

/** Reads the reports that succeeded Pods stored as manifests because they were too large. */
async function readManifests(store: ArtifactStore, run: PipelineRun, pods: Pod[]): Promise<Map<string, StepReport>> {
  const done = new Set((run.status?.steps ?? []).filter((s) => s.phase === 'Succeeded').map((s) => s.podName));
  const manifests = new Map<string, StepReport>();
  for (const pod of pods) {
    if (done.has(pod.metadata.name) || attemptOutcome(pod).state !== 'succeeded') continue;
    const message = terminationMessageOf(pod);
    if (message && 'manifest' in message) {
      manifests.set(pod.metadata.name, JSON.parse((await store.readAll(message.manifest.uri)).toString('utf8')) as StepReport);
    }
  }
  return manifests;
}

/** Results of the run being resumed that can be reused as they are (their artifacts still exist). */
async function resumedSteps(deps: PipelineRunDeps, run: PipelineRun): Promise<Map<string, Reused>> {
  const reuse = new Map<string, Reused>();
  const source = run.spec.resumeFrom ? deps.runs.get(`${run.metadata.namespace}/${run.spec.resumeFrom}`) : undefined;
  for (const step of source?.status?.steps ?? []) {
    if (step.phase !== 'Succeeded' && step.phase !== 'Cached') continue;
    const outputs = step.outputs ?? [];
    if (!(await Promise.all(outputs.map((o) => deps.store.exists(o.uri)))).every(Boolean)) continue;
    reuse.set(step.name, { run: step.cachedFrom ?? source!.metadata.name, outputs, ...(step.metrics ? { metrics: step.metrics } : {}) });
  }
  return reuse;
}

/**
 * Plans, then looks up the cache for the steps the plan would start, and plans again with the
 * hits, until no launch is left to look up (a hit can make the next step ready).
 */
async function planWithCache(deps: PipelineRunDeps, facts: RunFacts): Promise<RunPlan> {
  const reuse = new Map(facts.reuse);
  const waitFor = new Map<string, string>();
  const looked = new Set<string>();
  const misses = new Map<string, Record<string, string>>();
  const explained = async (plan: RunPlan): Promise<RunPlan> => {
    await explainMisses(deps, facts.run, plan, misses);
    return plan;
  };
  for (;;) {
    const plan = planRun({ ...facts, reuse, waitFor });
    const pending = plan.create.filter((l) => l.cache && l.attempt === 1 && !looked.has(l.step.name));
    if (pending.length === 0) return explained(plan);
    let changed = false;
    for (const launch of pending) {
      looked.add(launch.step.name);
      const result = await deps.stepCache.lookup(facts.run.metadata.namespace ?? '', launch.cache!.key, facts.run.metadata.name, launch.step.name, maxAgeMs(launch.step));
      if ('hit' in result) {
        reuse.set(launch.step.name, result.hit);
        deps.metrics.cacheLookups.inc({ result: 'hit' });
        changed = true;
      } else if ('runningIn' in result) {
        waitFor.set(launch.step.name, result.runningIn);
        deps.metrics.cacheLookups.inc({ result: 'wait' });
        changed = true;
      } else {
        deps.metrics.cacheLookups.inc({ result: 'miss' });
        misses.set(launch.step.name, launch.cache!.components);
      }
    }
    if (!changed) return explained(plan);
  }
}

/** Says in a started step's status why the cache had nothing for it: what differs from the nearest earlier execution. */
async function explainMisses(deps: PipelineRunDeps, run: PipelineRun, plan: RunPlan, misses: Map<string, Record<string, string>>): Promise<void> {
  const pipeline = plan.configuration?.spec.pipeline.name;
  if (!pipeline || misses.size === 0 || !deps.metadata.healthy()) return;
  for (const [stepName, components] of misses) {
    const step = plan.status.steps?.find((s) => s.name === stepName);
    if (step?.phase !== 'Running') continue;
    try {
      const nearest = await deps.metadata.explainCacheMiss(run.metadata.namespace ?? '', pipeline, stepName, components, { excludeRunUid: run.metadata.uid ?? '' });
      step.message = nearest
        ? `cache miss: ${nearest.differing.join(', ') || 'nothing'} differ${nearest.differing.length === 1 ? 's' : ''} from run "${nearest.run}"`
        : 'cache miss: no earlier execution of this step';
    } catch {
      // The explanation is a courtesy; the run goes on without it.
    }
  }
}

export async function reconcilePipelineRun(deps: PipelineRunDeps, key: string): Promise<ReconcileResult> {
  const cached = deps.runs.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return {};
  // NOTE: the cache's object is shared; planning works on a copy.
  const run = structuredClone(cached);
  const pods = deps.pods.byIndex(key).filter((pod) => pod.metadata.ownerReferences?.some((o) => o.uid === run.metadata.uid));
  const now = deps.clock.now();
  const finished = FINAL_RUN_PHASES.has(run.status?.phase ?? '');
  // A finished run needs its configuration only to record itself, if the store missed its end.
  const unrecorded = finished && run.status?.configuration && !(run.status.metadataRecorded ?? '').startsWith(`${run.status.phase}:`);
  // ... or to register its models, if it ended before they all were.
  const unregistered = finished && registrationPending(run.status);
  const start = finished && !unrecorded && !unregistered ? undefined : await freezeRun(deps.freeze, run);
  if (start?.kind === 'frozen' && start.written) {
    deps.log.info('configuration frozen', { namespace: run.metadata.namespace, name: run.metadata.name, uri: start.uri, digest: start.digest });
  }
  const manifests = finished ? undefined : await readManifests(deps.store, run, pods);
  const frozen = start?.kind === 'frozen' ? start : undefined;
  const reuse = finished || !run.spec.resumeFrom ? undefined : await resumedSteps(deps, run);
  const facts: RunFacts = { run, start, pods, now, ...(manifests ? { manifests } : {}), ...(reuse ? { reuse } : {}) };

  let plan = finished ? planRun(facts) : await planWithCache(deps, facts);
  // The new Pods go into the cache at once: the next pass must not create them again.
  const { created, rejected } = await createStepPods(deps.client, run, plan, deps.agent, (pod) => deps.pods.recordCreate(pod));
  deps.metrics.stepPodsCreated.inc(created);
  if (rejected.size > 0) plan = planRun({ ...facts, rejected });

  const configuration = plan.configuration?.spec ?? frozen?.configuration;
  if (configuration && !finished) await reserveModelVersions(deps, run, plan.status, configuration, now);

  let requeueAfterMs = plan.requeueAfterMs;
  // Metadata: derived from the status about to be written, recorded before it (the status
  // remembers what was recorded, so nothing is lost if PostgreSQL is down: it is retried).
  if (configuration) {
    const records = recordsOf(run, plan.status, configuration);
    const digest = recordsDigest(records);
    if (run.status?.metadataRecorded !== digest) {
      try {
        await deps.metadata.recordRun(records);
        plan.status.metadataRecorded = digest;
      } catch (err) {
        deps.log.warn('metadata not recorded; will retry', { namespace: run.metadata.namespace, name: run.metadata.name, error: errorMessage(err) });
        requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, 5_000);
      }
    }
  }

  let latest = run;
  if (statusChanged(run, plan.status)) {
    const written = await writeRunStatus(deps.client, run, plan.status);
    deps.runs.recordWrite(written);
    latest = written;
    const log = deps.log.child({ namespace: run.metadata.namespace, name: run.metadata.name });
    if (plan.status.phase !== run.status?.phase) {
      log.info('run phase changed', { from: run.status?.phase ?? 'New', to: plan.status.phase, progress: plan.status.progress });
      if (plan.status.phase === 'Succeeded' || plan.status.phase === 'Failed' || plan.status.phase === 'Cancelled') {
        deps.metrics.runsFinished.inc({ phase: plan.status.phase });
      }
    }
    observeFinishedSteps(deps, run, plan);
    const reference = { ...run, apiVersion: API_VERSION, kind: 'PipelineRun' };
    for (const e of plan.events) if (e.reason === 'StepRetrying') deps.metrics.stepRetries.inc();
    for (const e of collapseEvents(plan.events)) deps.events.record(reference, e.type, e.reason, e.message);
  }
  // Pods first: a refused registration must not keep a cancelled or failed run's Pods running.
  await deletePods(deps.client, plan.delete);
  if (configuration && registrationPending(plan.status)) await registerModels(deps, latest, configuration);
  return requeueAfterMs !== undefined ? { requeueAfterMs } : {};
}

/**
 * Creates the ModelVersions the run's status reserved (ModelsRegistered Unknown or False) and
 * says so on the run: True once every one exists, after which a version the user deletes is not
 * brought back. A refusal (an admission policy, a name taken by another run, the API down) is
 * False with the reason and one Warning Event, and the error goes back to the queue to be
 * retried with backoff.
 */
async function registerModels(deps: PipelineRunDeps, run: PipelineRun, configuration: NonNullable<RunPlan['configuration']>['spec']): Promise<void> {
  const status = run.status ?? {};
  const showRegistration = async (value: 'True' | 'False', reason: string, message: string): Promise<void> => {
    const next = { ...status }; // setModelsRegistered replaces the conditions array, never edits it
    setModelsRegistered(next, value, reason, message, deps.clock.now());
    if (statusChanged(run, next)) deps.runs.recordWrite(await writeRunStatus(deps.client, run, next));
  };
  let created: ModelVersion[];
  try {
    const bound = await boundInference(deps, run, configuration);
    created = await ensureModelVersions(deps, run, status, configuration, bound);
    for (const version of created) {
      deps.log.info('model registered', { namespace: run.metadata.namespace, name: version.metadata.name, stage: version.spec.stage });
    }
  } catch (err) {
    const message = truncate(`cannot register the run's models: ${errorMessage(err)}`, 1024);
    const shown = findCondition(status.conditions, CONDITION_MODELS_REGISTERED);
    if (shown?.status !== 'False' || shown.message !== message) { // one Event per new refusal, not per retry
      deps.events.record({ ...run, apiVersion: API_VERSION, kind: 'PipelineRun' }, 'Warning', Reasons.RegistrationFailed, message);
    }
    await showRegistration('False', Reasons.RegistrationFailed, message).catch(() => {}); // the error below is the one to retry on
    throw new Error(`PipelineRun ${run.metadata.namespace}/${run.metadata.name}: ${message}`, { cause: err });
  }
  const versions = reservedVersions(deps.modelVersions, run.metadata.namespace ?? '', status, created);
  if (versions.length > 0 && versions.every((v) => v.exists)) {
    await showRegistration('True', Reasons.Registered, `registered ${versions.map((v) => v.name).join(', ')}`);
  }
}

/** Step durations and published bytes, for steps that finished in this pass. */
function observeFinishedSteps(deps: PipelineRunDeps, run: PipelineRun, plan: RunPlan): void {
  const before = new Map((run.status?.steps ?? []).map((s) => [s.name, s.phase]));
  for (const step of plan.status.steps ?? []) {
    if (before.get(step.name) === step.phase || (step.phase !== 'Succeeded' && step.phase !== 'Failed')) continue;
    const seconds = (Date.parse(step.finishedAt ?? '') - Date.parse(step.startedAt ?? '')) / 1000;
    if (Number.isFinite(seconds)) deps.metrics.stepDuration.observe({ result: step.phase }, Math.max(0, seconds));
    const bytes = (step.outputs ?? []).reduce((sum, o) => sum + (o.size ?? 0), 0);
    if (bytes > 0) deps.metrics.artifactBytes.inc({ direction: 'published' }, bytes);
  }
}

/** The inference Pipeline a training Pipeline names, with its spec hash, for the versions it registers. */
async function boundInference(
  deps: PipelineRunDeps, run: PipelineRun, configuration: NonNullable<RunPlan['configuration']>['spec'],
): Promise<{ pipeline: string; specHash: string } | undefined> {
  const name = configuration.spec.inference?.pipelineRef.name;
  if (!name) return undefined;
  const pipeline = deps.freeze.pipelineOf(run.metadata.namespace ?? '', name);
  return { pipeline: name, specHash: pipeline ? digestOf(pipeline.spec) : '' };
}
