// Reconciles one PipelineRun in one pass: gather → plan (pure) → create children → fold what
// happened into the status (pure) → record metadata → write status once → delete Pods → emit
// the pass's Events. A finished run takes a short path (register what was refused, record
// what the store missed, stop its Pods) with the same tail. Safe to stop at any line and run
// again: the configuration is written once, children have deterministic names and are adopted,
// and the status write carries the resourceVersion.
import { Readable } from 'node:stream';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { EventReasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { digestOf } from '../../configuration/canonical-json.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage } from '../../kube/errors.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { Pod } from '../../kube/pod.ts';
import type { MetadataBacklog } from '../../metadata/backlog.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import type { ModelVersionCache, PodCache, RunCache } from '../indexes.ts';
import { createStepPods, deletePods, statusChanged, writeRunStatus } from './apply.ts';
import { foldPass, type ChildWrites, type Pass } from './fold.ts';
import type { FreezeDeps } from './freeze.ts';
import { gatherRun, type FinishedRunFacts } from './gather.ts';
import { collapseEvents, planFinishedRun, planRun, type RunFacts, type RunPlan } from './plan.ts';
import type { AgentSettings } from './pod-spec.ts';
import { recordsDigest, recordsOf } from './records.ts';
import { registerModels, registrationPending, type BoundInference, type RegistrationOutcome } from './registration.ts';
import type { FailureSettings } from './retry-policy.ts';
import type { StepCache } from './step-cache.ts';

export interface PipelineRunDeps {
  client: KubeClient;
  runs: RunCache;
  pods: PodCache;
  modelVersions: ModelVersionCache;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  freeze: FreezeDeps;
  store: ArtifactStore;
  agent: AgentSettings;
  /** Stuck Pods' timeouts and free retries of infrastructure losses (config.ts). */
  failureSettings: FailureSettings;
  stepCache: StepCache;
  metadata: MetadataStore;
  /** Version numbers this process handed out, by `namespace/model`. */
  issuedVersions: Map<string, number>;
  /** The number each registering output was given, by `<run uid>/<step>/<output>` (registration.ts). */
  claimedVersions: Map<string, number>;
  /**
   * Runs whose records wait for the metadata store, by key: while it is down no pass spends a
   * worker on it; when it answers again the controller enqueues them (their status says what is unrecorded).
   */
  metadataBacklog: MetadataBacklog;
}

/** What a pass ends with: the status to write, what to delete and emit after, and how to come back. */
interface PassResult extends Pass {
  /** The run's frozen configuration, when it has one: what its records are derived from. */
  configuration?: PipelineConfiguration;
  requeueAfterMs?: number;
  backoff: boolean;
  /** ModelVersions created in this pass, logged once the status write succeeded. */
  created: RegistrationOutcome['created'];
}

export async function reconcilePipelineRun(deps: PipelineRunDeps, key: string): Promise<ReconcileResult> {
  const gathered = await gatherRun(deps, key);
  if (!gathered) return {};
  const result = gathered.kind === 'live' ? await passOfLiveRun(deps, gathered.facts) : await passOfFinishedRun(deps, gathered.facts);
  return commit(deps, key, gathered.facts.run, result);
}

/** Plans the run, creates its new Pods and models, and folds what happened into the status. */
async function passOfLiveRun(deps: PipelineRunDeps, facts: RunFacts): Promise<PassResult> {
  const { run } = facts;
  if (facts.start.kind === 'frozen' && facts.start.written) {
    deps.log.info('configuration frozen', { namespace: run.metadata.namespace, name: run.metadata.name, uri: facts.start.uri, digest: facts.start.digest });
  }
  const plan = await planWithVerifiedResults(deps, facts);
  for (const result of plan.lookups) deps.metrics.cacheLookups.inc({ result });

  // The collections of forEach steps that finished are stored before anything reads them (a
  // step this pass starts) and before the status names them. Content-addressed: writing one twice is one.
  const namespace = run.metadata.namespace ?? '';
  await Promise.all(plan.collections.map((bytes) => deps.store.putBlob(namespace, Readable.from([bytes]))));
  const created: Pod[] = [];
  const pods = await createStepPods(deps.client, run, plan, deps.agent, deps.store, facts.now, (pod) => {
    deps.pods.recordCreate(pod); // the next pass must not create it again
    created.push(pod);
  });
  deps.metrics.stepPodsCreated.inc(pods.created);
  const configuration = plan.configuration?.spec;
  const writes: ChildWrites = {
    pods: { launches: plan.create, created, rejected: pods.rejected },
    explanations: await explainCacheMisses(deps, run, plan),
  };
  if (configuration && registrationPending(plan.status, configuration)) {
    writes.registration = await registerModels(deps, run, plan.status, configuration, facts.registered, boundInference(deps, run, configuration));
  }
  const pass = foldPass(plan, writes, facts);
  return {
    ...pass,
    ...(plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {}),
    backoff: plan.backoff === true || writes.registration?.refused !== undefined,
    created: writes.registration?.created ?? [],
    ...(configuration ? { configuration } : {}),
  };
}

/**
 * Plans, claims the keys of the steps it starts (in the same synchronous stretch, so two runs
 * cannot both miss one key), then checks once that the results it reuses still exist. A result
 * whose artifact is gone is never offered again and the run is planned anew without it.
 */
async function planWithVerifiedResults(deps: PipelineRunDeps, facts: RunFacts): Promise<RunPlan> {
  const namespace = facts.run.metadata.namespace ?? '';
  for (;;) {
    const plan = planRun(facts);
    deps.stepCache.claim(namespace, facts.run.metadata.name, plan.create);
    const stale = await deps.stepCache.verify(plan.reused);
    if (stale.length === 0) return plan;
    // The plan is discarded: so are its claims (a step it would have started may wait again).
    deps.stepCache.release(namespace, facts.run.metadata.name, plan.create);
    for (const step of stale) facts.resumed.delete(step);
  }
}

/** A finished run: stop its Pods, and register the models whose registration was refused. */
async function passOfFinishedRun(deps: PipelineRunDeps, facts: FinishedRunFacts): Promise<PassResult> {
  const { run, configuration } = facts;
  const status: PipelineRunStatus = { ...run.status, observedGeneration: run.metadata.generation ?? 0 };
  const pass: Pass = { status, delete: planFinishedRun(facts.pods), events: [] };
  const writes: ChildWrites = {};
  if (configuration && registrationPending(status, configuration)) {
    writes.registration = await registerModels(deps, run, status, configuration, facts.registered, boundInference(deps, run, configuration));
  }
  return {
    ...foldPass(pass, writes, facts),
    backoff: writes.registration?.refused !== undefined,
    created: writes.registration?.created ?? [],
    ...(configuration ? { configuration } : {}),
  };
}

/** The tail of every pass, in the one write order: record → write status → delete Pods → Events. */
async function commit(deps: PipelineRunDeps, key: string, run: PipelineRun, result: PassResult): Promise<ReconcileResult> {
  const log = deps.log.child({ namespace: run.metadata.namespace, name: run.metadata.name });
  const recorded = result.configuration ? await recordMetadata(deps, key, run, result.status, result.configuration) : { status: result.status, retry: false };
  const { status } = recorded;
  let statusWrites = 0;
  if (statusChanged(run, status)) {
    deps.runs.recordWrite(await writeRunStatus(deps.client, run, status, deps.clock.now()));
    statusWrites++;
  }
  await deletePods(deps.client, result.delete);

  // NOTE: only now, after the write it describes succeeded, is anything announced.
  for (const version of result.created) log.info('model registered', { model: version.metadata.name, stage: version.spec.stage });
  if (status.phase !== run.status?.phase) {
    log.info('run phase changed', { from: run.status?.phase ?? 'New', to: status.phase, progress: status.progress });
    if (status.phase === 'Succeeded' || status.phase === 'Failed' || status.phase === 'Cancelled') deps.metrics.runsFinished.inc({ phase: status.phase });
  }
  observeFinishedSteps(deps, run, status);
  const reference = { ...run, apiVersion: API_VERSION, kind: 'PipelineRun' };
  for (const e of result.events) if (e.reason === EventReasons.StepRetrying) deps.metrics.stepRetries.inc();
  for (const e of collapseEvents(result.events)) deps.events.record(reference, e.type, e.reason, e.message);
  log.debug('reconciled', { phase: status.phase, statusWrites, podsDeleted: result.delete.length, events: result.events.length, requeueAfterMs: result.requeueAfterMs });

  return {
    ...(result.requeueAfterMs !== undefined ? { requeueAfterMs: result.requeueAfterMs } : {}),
    ...(result.backoff || recorded.retry ? { requeue: true } : {}),
  };
}

/**
 * Records the run in the metadata store, derived from the status about to be written, and
 * notes in that status what was recorded (so a record missed while the database was down is
 * replayed). The backlog decides whether to try (metadata/backlog.ts).
 */
async function recordMetadata(
  deps: PipelineRunDeps, key: string, run: PipelineRun, status: PipelineRunStatus, configuration: PipelineConfiguration,
): Promise<{ status: PipelineRunStatus; retry: boolean }> {
  const records = recordsOf(run, status, configuration);
  const digest = recordsDigest(records);
  if (status.metadataRecorded === digest) return { status, retry: false };
  const outcome = await deps.metadataBacklog.write(deps.metadata, key, () => deps.metadata.recordRun(records));
  if (outcome.kind === 'stored') return { status: { ...status, metadataRecorded: digest }, retry: false };
  if (outcome.error !== undefined) {
    deps.log.warn('metadata not recorded; will retry', { namespace: run.metadata.namespace, name: run.metadata.name, error: errorMessage(outcome.error), databaseReachable: outcome.kind === 'retry' });
  }
  return { status, retry: outcome.kind === 'retry' };
}

/** Says, for each step the plan starts from scratch, why the cache had nothing for it: what differs from the nearest earlier execution. */
async function explainCacheMisses(deps: PipelineRunDeps, run: PipelineRun, plan: RunPlan): Promise<Map<string, string>> {
  const explanations = new Map<string, string>();
  const pipeline = plan.configuration?.spec.pipeline.name;
  const misses = plan.create.filter((l) => l.cache && l.attempt === 1);
  if (!pipeline || misses.length === 0 || !deps.metadata.healthy()) return explanations;
  for (const launch of misses) {
    try {
      const nearest = await deps.metadata.explainCacheMiss(run.metadata.namespace ?? '', pipeline, launch.step.name, launch.cache!.components, { excludeRunUid: run.metadata.uid ?? '' });
      explanations.set(launch.step.name, nearest
        ? `cache miss: ${nearest.differing.join(', ') || 'nothing'} differ${nearest.differing.length === 1 ? 's' : ''} from run "${nearest.run}"`
        : 'cache miss: no earlier execution of this step');
    } catch {
      // The explanation is a courtesy; the run goes on without it.
    }
  }
  return explanations;
}

/** Step durations and published bytes, for steps that finished in this pass. */
function observeFinishedSteps(deps: PipelineRunDeps, run: PipelineRun, status: PipelineRunStatus): void {
  const before = new Map((run.status?.steps ?? []).map((s) => [s.name, s.phase]));
  for (const step of status.steps ?? []) {
    if (before.get(step.name) === step.phase || (step.phase !== 'Succeeded' && step.phase !== 'Failed')) continue;
    const seconds = (Date.parse(step.finishedAt ?? '') - Date.parse(step.startedAt ?? '')) / 1000;
    if (Number.isFinite(seconds)) deps.metrics.stepDuration.observe({ result: step.phase }, Math.max(0, seconds));
    const bytes = (step.outputs ?? []).reduce((sum, o) => sum + (o.size ?? 0), 0);
    if (bytes > 0) deps.metrics.artifactBytes.inc({ direction: 'published' }, bytes);
  }
}

/** The inference Pipeline a training Pipeline names, with its spec hash, for the versions it registers. */
function boundInference(deps: PipelineRunDeps, run: PipelineRun, configuration: PipelineConfiguration): BoundInference {
  const name = configuration.spec.inference?.pipelineRef.name;
  if (!name) return undefined;
  const pipeline = deps.freeze.pipelineOf(run.metadata.namespace ?? '', name);
  return { pipeline: name, specHash: pipeline ? digestOf(pipeline.spec) : '' };
}
