// Reconciles one PipelineRun: gather (run, Pipeline, Pods from the caches) → plan (pure) →
// apply (create Pods, write status, delete Pods, emit events). Safe to stop at any line and
// run again: Pod names are deterministic and status writes carry the resourceVersion.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { Pod } from '../../kube/pod.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { createStepPods, deletePods, statusChanged, writeRunStatus } from './apply.ts';
import { planRun } from './plan.ts';

export interface PipelineRunDeps {
  client: KubeClient;
  runs: Cache<PipelineRun>;
  pipelines: Cache<Pipeline>;
  pods: Cache<Pod>;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export function runKeyOfPod(pod: Pod): string | undefined {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'PipelineRun' && o.apiVersion === API_VERSION);
  return owner ? `${pod.metadata.namespace}/${owner.name}` : undefined;
}

export const pipelineKeyOfRun = (run: PipelineRun) => `${run.metadata.namespace}/${run.spec.pipelineRef.name}`;

export async function reconcilePipelineRun(deps: PipelineRunDeps, key: string): Promise<ReconcileResult> {
  const cached = deps.runs.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return {};
  // NOTE: the cache's object is shared; planning works on a copy.
  const run = structuredClone(cached);
  const pipeline = deps.pipelines.get(pipelineKeyOfRun(run));
  const pods = deps.pods.byIndex(key).filter((pod) => pod.metadata.ownerReferences?.some((o) => o.uid === run.metadata.uid));
  const now = deps.clock.now();

  let plan = planRun({ run, pipeline, pods, now });
  const { created, rejected } = await createStepPods(deps.client, run, plan);
  deps.metrics.stepPodsCreated.inc(created);
  if (rejected.size > 0) plan = planRun({ run, pipeline, pods, now, rejected });

  if (statusChanged(run, plan.status)) {
    const written = await writeRunStatus(deps.client, run, plan.status);
    deps.runs.recordWrite(written);
    const log = deps.log.child({ namespace: run.metadata.namespace, name: run.metadata.name });
    if (plan.status.phase !== run.status?.phase) {
      log.info('run phase changed', { from: run.status?.phase ?? 'New', to: plan.status.phase, progress: plan.status.progress });
      if (plan.status.phase === 'Succeeded' || plan.status.phase === 'Failed' || plan.status.phase === 'Cancelled') {
        deps.metrics.runsFinished.inc({ phase: plan.status.phase });
      }
    }
    const reference = { ...run, apiVersion: API_VERSION, kind: 'PipelineRun' };
    for (const e of plan.events) {
      if (e.reason === 'StepRetrying') deps.metrics.stepRetries.inc();
      deps.events.record(reference, e.type, e.reason, e.message);
    }
  }
  await deletePods(deps.client, plan.delete);
  return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {};
}
