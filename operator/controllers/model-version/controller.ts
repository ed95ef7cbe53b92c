// Wires the ModelVersion controller: each version is a key; a change to any version of a model
// wakes its siblings too (a promotion archives the previous Production version).
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import { Controller } from '../../runtime/controller.ts';
import { objectKey } from '../../runtime/informer.ts';
import { reconcileModelVersion, type ModelVersionDeps } from './reconcile.ts';

export const MODEL_VERSION_CONTROLLER = 'modelversion';

export function createModelVersionController(deps: ModelVersionDeps, workers: number): Controller {
  const log = deps.log.child({ controller: MODEL_VERSION_CONTROLLER });
  const controller = new Controller({
    name: MODEL_VERSION_CONTROLLER,
    workers,
    log: deps.log,
    metrics: deps.metrics,
    reconcile: (key) => reconcileModelVersion({ ...deps, log }, key),
  });
  const enqueue = (v: ModelVersion) => controller.enqueue(objectKey(v));
  deps.modelVersions.addHandlers({ onAdd: enqueue, onUpdate: (_, v) => enqueue(v) });
  return controller;
}
