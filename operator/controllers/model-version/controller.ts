// Wires the ModelVersion controller: each version is a key, woken by its own changes (a
// promotion archives the previous Production version by patching it, which wakes that one);
// the metadata store answering again wakes the versions whose records waited for it.
import { createController, type Controller } from '../../runtime/controller.ts';
import { inNamespace } from '../indexes.ts';
import { reconcileModelVersion, type ModelVersionDeps } from './reconcile.ts';

export const MODEL_VERSION_CONTROLLER = 'modelversion';

export function createModelVersionController(deps: ModelVersionDeps, workers: number): Controller {
  const controller = createController(MODEL_VERSION_CONTROLLER, deps, workers, reconcileModelVersion).watch(deps.modelVersions);
  // An endpoint's status moving (a rollout starting, ending or failing) changes what its model's versions say.
  if (deps.pipelines) {
    const versions = deps.modelVersions;
    controller.watch(deps.pipelines, (p) => {
      const model = p.status?.serving?.model;
      return model ? versions.byIndex('model', inNamespace(p.metadata.namespace, model)).map((v) => inNamespace(v.metadata.namespace, v.metadata.name)) : [];
    });
  }
  // Versions whose stage waited for the metadata store are recorded once it answers again.
  deps.metadataBacklog.replayWhenReachable(deps.metadata, (key) => controller.enqueue(key));
  return controller;
}
