// The Pipeline controller: validates what the schema cannot (validate.ts) and reports it as
// the Ready condition, with the spec hash and step count, in status.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { CONDITION_READY, Reasons, findCondition, setCondition } from '../../api/v1alpha1/conditions.ts';
import type { Pipeline, PipelineStatus } from '../../api/v1alpha1/pipeline.ts';
import { canonicalJson, digestOf } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { PIPELINES } from '../../kube/resources.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import { createController, type Controller } from '../../runtime/controller.ts';
import { validatePipeline } from './validate.ts';

export const PIPELINE_CONTROLLER = 'pipeline';

export interface PipelineDeps {
  client: KubeClient;
  pipelines: Cache<Pipeline>;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/** The status a Pipeline should have (pure). */
export function pipelineStatus(pipeline: Pipeline, now: Date): PipelineStatus {
  const problem = validatePipeline(pipeline.spec);
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

export async function reconcilePipeline(deps: PipelineDeps, key: string): Promise<void> {
  const cached = deps.pipelines.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return;
  const status = pipelineStatus(cached, deps.clock.now());
  if (canonicalJson(status) === canonicalJson(cached.status ?? {})) return;
  const written = await deps.client.replaceStatus<Pipeline>(PIPELINES, { ...structuredClone(cached), status });
  deps.pipelines.recordWrite(written);
  const before = findCondition(cached.status?.conditions, CONDITION_READY);
  const after = findCondition(status.conditions, CONDITION_READY)!;
  if (before?.status !== after.status || before?.reason !== after.reason) {
    deps.log.info('pipeline validated', { namespace: cached.metadata.namespace, name: cached.metadata.name, ready: after.status, reason: after.reason });
    const reference = { ...cached, apiVersion: API_VERSION, kind: 'Pipeline' };
    if (after.status === 'True') deps.events.record(reference, 'Normal', after.reason, after.message);
    else deps.events.record(reference, 'Warning', after.reason, after.message);
  }
}

export function createPipelineController(deps: PipelineDeps, workers: number): Controller {
  return createController(PIPELINE_CONTROLLER, deps, workers, reconcilePipeline).watch(deps.pipelines);
}
