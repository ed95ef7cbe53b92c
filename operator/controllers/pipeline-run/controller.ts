// Wires the PipelineRun controller: runs are its keys; a Pod event wakes the run that
// controls it; a Pipeline event wakes the unfinished runs that reference it; the metadata store
// answering again wakes the runs whose records waited for it.
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { Cache } from '../../runtime/cache.ts';
import { createController, type Controller } from '../../runtime/controller.ts';
import { objectKey } from '../../runtime/informer.ts';
import { podIndexes } from '../indexes.ts';
import { reconcilePipelineRun, type PipelineRunDeps } from './reconcile.ts';

export const PIPELINE_RUN_CONTROLLER = 'pipelinerun';

export function createPipelineRunController(deps: PipelineRunDeps, pipelines: Cache<Pipeline>, workers: number): Controller {
  const controller = createController(PIPELINE_RUN_CONTROLLER, deps, workers, reconcilePipelineRun)
    .watch(deps.runs)
    .watch(deps.pods, podIndexes.run)
    .watch(pipelines, (pipeline) => deps.runs.byIndex('pipeline', objectKey(pipeline))
      .filter((run) => !FINAL_RUN_PHASES.has(run.status?.phase ?? ''))
      .map(objectKey));

  deps.metadataBacklog.replayWhenReachable(deps.metadata, (key) => controller.enqueue(key),
    (runs) => controller.log.info('replaying metadata records', { runs }));
  return controller;
}
