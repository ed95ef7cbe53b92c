// Wires the ModelVersion controller: each version is a key, woken by its own changes (a
// promotion archives the previous Production version by patching it, which wakes that one);
// the metadata store answering again wakes the versions whose records waited for it.
import { createController, type Controller } from '../../runtime/controller.ts';
import { reconcileModelVersion, type ModelVersionDeps } from './reconcile.ts';

export const MODEL_VERSION_CONTROLLER = 'modelversion';

export function createModelVersionController(deps: ModelVersionDeps, workers: number): Controller {
  const controller = createController(MODEL_VERSION_CONTROLLER, deps, workers, reconcileModelVersion).watch(deps.modelVersions);
  // Versions whose stage waited for the metadata store are recorded once it answers again.
  deps.metadataBacklog.replayWhenReachable(deps.metadata, (key) => controller.enqueue(key));
  return controller;
}
