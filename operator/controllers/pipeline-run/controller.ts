// Wires the PipelineRun controller: runs are its keys; a Pod event wakes the run that
// controls it; a Pipeline event wakes the unfinished runs that reference it; the metadata store
// answering again wakes the runs whose records waited for it.
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { Cache } from '../../runtime/cache.ts';
import { Controller } from '../../runtime/controller.ts';
import { objectKey } from '../../runtime/informer.ts';
import { runKeyOfPod } from '../indexes.ts';
import { reconcilePipelineRun, type PipelineRunDeps } from './reconcile.ts';

export const PIPELINE_RUN_CONTROLLER = 'pipelinerun';

export function createPipelineRunController(deps: PipelineRunDeps, pipelines: Cache<Pipeline>, workers: number): Controller {
  const log = deps.log.child({ controller: PIPELINE_RUN_CONTROLLER });
  const controller = new Controller({
    name: PIPELINE_RUN_CONTROLLER,
    workers,
    log: deps.log,
    metrics: deps.metrics,
    reconcile: (key) => reconcilePipelineRun({ ...deps, log }, key),
  });
  const enqueue = (o: { metadata: { name: string; namespace?: string } }) => controller.enqueue(objectKey(o));
  deps.runs.addHandlers({ onAdd: enqueue, onUpdate: (_, run) => enqueue(run), onDelete: enqueue });

  const enqueueOwner = (pod: Parameters<typeof runKeyOfPod>[0]) => {
    const key = runKeyOfPod(pod);
    if (key) controller.enqueue(key);
  };
  deps.pods.addHandlers({ onAdd: enqueueOwner, onUpdate: (_, pod) => enqueueOwner(pod), onDelete: enqueueOwner });

  const enqueueRunsOf = (pipeline: Pipeline) => {
    for (const run of deps.runs.byIndex('pipeline', objectKey(pipeline))) {
      if (!FINAL_RUN_PHASES.has(run.status?.phase ?? '')) controller.enqueue(objectKey(run));
    }
  };
  pipelines.addHandlers({ onAdd: enqueueRunsOf, onUpdate: (_, p) => enqueueRunsOf(p), onDelete: enqueueRunsOf });

  deps.metadata.onReachable(() => {
    const waiting = [...deps.metadataBacklog];
    deps.metadataBacklog.clear();
    if (waiting.length > 0) log.info('replaying metadata records', { runs: waiting.length });
    for (const key of waiting) controller.enqueue(key);
  });
  return controller;
}
