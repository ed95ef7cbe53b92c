// The Pipeline controller: validates what the schema cannot (validate.ts) and reports it as
// the Ready condition, with the spec hash and step count, in status; keeps the endpoint a valid
// Pipeline declares (serving/reconcile.ts), woken by its Deployment and Service and by the
// versions of the model it serves; and starts the runs its schedules say (schedules/reconcile.ts),
// woken at the next scheduled time. One writer of the Pipeline's status.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { CONDITION_READY, CONDITION_SERVING, Reasons, findCondition, setCondition } from '../../api/v1alpha1/conditions.ts';
import type { Pipeline, PipelineStatus } from '../../api/v1alpha1/pipeline.ts';
import { canonicalJson, digestOf } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { PIPELINES } from '../../kube/resources.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Clock } from '../../runtime/clock.ts';
import { createController, type Controller, type ReconcileResult } from '../../runtime/controller.ts';
import { inNamespace, type PipelineCache } from '../indexes.ts';
import type { Deployment, Service } from '../serving/endpoint-objects.ts';
import { reconcileEndpoint, type ServingDeps } from '../serving/reconcile.ts';
import { reconcileSchedules, type ScheduleDeps } from '../schedules/reconcile.ts';
import { scheduleProblem } from '../schedules/validate.ts';
import { validatePipeline } from './validate.ts';

export const PIPELINE_CONTROLLER = 'pipeline';

export interface PipelineDeps {
  client: KubeClient;
  pipelines: PipelineCache;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** What endpoints need; without it (tests of validation alone) `serving` is not acted on. */
  serving?: Omit<ServingDeps, 'client' | 'clock' | 'log' | 'metrics'>;
  /** What schedules need; without it `schedules` are not acted on. */
  schedules?: Omit<ScheduleDeps, 'client' | 'clock' | 'log'>;
}

/** The status a Pipeline should have (pure). */
export function pipelineStatus(pipeline: Pipeline, now: Date): PipelineStatus {
  const problem = validatePipeline(pipeline.spec) ?? scheduleProblem(pipeline);
  const ready = problem
    ? { type: CONDITION_READY, status: 'False' as const, reason: problem.reason, message: problem.message }
    : { type: CONDITION_READY, status: 'True' as const, reason: Reasons.Valid, message: `${pipeline.spec.steps.length} steps, no cycles` };
  return {
    ...pipeline.status,
    observedGeneration: pipeline.metadata.generation ?? 0,
    specHash: digestOf(pipeline.spec),
    stepCount: pipeline.spec.steps.length,
    conditions: setCondition(pipeline.status?.conditions, { ...ready, observedGeneration: pipeline.metadata.generation ?? 0 }, now),
  };
}

export async function reconcilePipeline(deps: PipelineDeps, key: string): Promise<ReconcileResult> {
  const cached = deps.pipelines.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return {};
  const now = deps.clock.now();
  const status = pipelineStatus(cached, now);
  const ready = findCondition(status.conditions, CONDITION_READY)!;
  let result: ReconcileResult = {};
  let events: Array<['Normal' | 'Warning', string, string]> = [];
  // An invalid spec leaves the endpoint as it is: a typo must not take a model offline.
  if (deps.serving && (ready.status === 'True' || !cached.spec.serving)) {
    const outcome = await reconcileEndpoint({ ...deps.serving, client: deps.client, clock: deps.clock, log: deps.log, metrics: deps.metrics }, cached);
    if (outcome.serving) status.serving = outcome.serving;
    else delete status.serving;
    status.conditions = outcome.condition
      ? setCondition(status.conditions, outcome.condition, now)
      : status.conditions?.filter((c) => c.type !== CONDITION_SERVING);
    events = outcome.events;
    result = { ...(outcome.requeueAfterMs !== undefined ? { requeueAfterMs: outcome.requeueAfterMs } : {}), ...(outcome.requeue ? { requeue: true } : {}) };
  }
  // An invalid spec starts no scheduled run; its schedules' status stays as it was.
  if (deps.schedules && ready.status === 'True') {
    const schedules = await reconcileSchedules({ ...deps.schedules, client: deps.client, clock: deps.clock, log: deps.log }, cached);
    if (schedules.statuses.length > 0) status.schedules = schedules.statuses;
    else delete status.schedules;
    events = [...events, ...schedules.events];
    if (schedules.requeueAfterMs !== undefined) {
      result = { ...result, requeueAfterMs: Math.min(result.requeueAfterMs ?? Infinity, schedules.requeueAfterMs) };
    }
  }
  const reference = { ...cached, apiVersion: API_VERSION, kind: 'Pipeline' };
  if (canonicalJson(status) !== canonicalJson(cached.status ?? {})) {
    const written = await deps.client.replaceStatus<Pipeline>(PIPELINES, { ...structuredClone(cached), status });
    // Announced: the ModelVersion controller reads the endpoint's status (model-version/endpoints.ts).
    deps.pipelines.recordWrite(written, { announce: written.status?.serving !== undefined || cached.status?.serving !== undefined });
    const before = findCondition(cached.status?.conditions, CONDITION_READY);
    if (before?.status !== ready.status || before?.reason !== ready.reason) {
      deps.log.info('pipeline validated', { namespace: cached.metadata.namespace, name: cached.metadata.name, ready: ready.status, reason: ready.reason });
      deps.events.record(reference, ready.status === 'True' ? 'Normal' : 'Warning', ready.reason, ready.message);
    }
  }
  for (const [type, reason, message] of events) deps.events.record(reference, type, reason, message);
  return result;
}

/** The Pipeline that owns an endpoint's Deployment or Service. */
const ownerPipeline = (object: Deployment | Service): string[] =>
  (object.metadata.ownerReferences ?? []).filter((o) => o.kind === 'Pipeline' && o.apiVersion === API_VERSION).map((o) => inNamespace(object.metadata.namespace, o.name));

export function createPipelineController(deps: PipelineDeps, workers: number): Controller {
  const controller = createController(PIPELINE_CONTROLLER, deps, workers, reconcilePipeline).watch(deps.pipelines);
  const serving = deps.serving;
  if (serving) {
    controller
      .watch(serving.deployments, ownerPipeline)
      .watch(serving.services, ownerPipeline)
      // A version promoted, archived or given an alias moves the endpoints serving its model.
      .watch(serving.modelVersions, (v) => deps.pipelines.byIndex('servedModel', inNamespace(v.metadata.namespace, v.spec.modelName)).map((p) => inNamespace(p.metadata.namespace, p.metadata.name)));
    serving.metadataBacklog.replayWhenReachable(serving.metadata, (key) => controller.enqueue(key));
  }
  return controller;
}
