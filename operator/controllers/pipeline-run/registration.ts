// Registering models: when a step that declares a `model` output with `register` succeeds, the
// run reserves a version number for it in its status (numbers increase per model and
// namespace and are never reused), then creates ModelVersion `<model>-v<N>`, already in the
// stage its Pipeline's promotion policy decides. The reservation in status makes this
// idempotent: a pass that is repeated creates the same object, not a second version.
import { API_VERSION, type Condition } from '../../api/v1alpha1/common.ts';
import { CONDITION_MODELS_REGISTERED, Reasons, findCondition, setCondition } from '../../api/v1alpha1/conditions.ts';
import { modelVersionName, type ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { KubeClient } from '../../kube/client.ts';
import { isAlreadyExists } from '../../kube/errors.ts';
import { MODEL_VERSIONS } from '../../kube/resources.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import { evaluatePromotion } from '../../models/promotion.ts';
import type { Cache } from '../../runtime/cache.ts';

export const LABEL_MODEL = 'ferry.dev/model';
export const LABEL_RUN_UID = 'ferry.dev/run-uid';
export const ANNOTATION_STAGE_BY = 'ferry.dev/stage-changed-by';
export const ANNOTATION_STAGE_REASON = 'ferry.dev/stage-reason';

export interface RegistrationDeps {
  client: KubeClient;
  runs: Cache<PipelineRun>;
  modelVersions: Cache<ModelVersion>;
  metadata: MetadataStore;
  /** Version numbers this process handed out, by `namespace/model`, so concurrent runs never share one. */
  issuedVersions: Map<string, number>;
}

/** The highest version of a model anyone has: existing ModelVersions and reservations in run statuses. */
function highestKnown(deps: RegistrationDeps, namespace: string, model: string): number {
  const existing = deps.modelVersions.byIndex(`model:${namespace}/${model}`).map((v) => v.spec.version);
  const reserved = deps.runs.byIndex(`model:${namespace}/${model}`)
    .flatMap((r) => (r.status?.steps ?? []).flatMap((s) => s.models ?? []))
    .filter((m) => m.name === model)
    .map((m) => m.version);
  return Math.max(0, deps.issuedVersions.get(`${namespace}/${model}`) ?? 0, ...existing, ...reserved);
}

/** `claim` identifies the registering output, so a retried reservation gets the same number back. */
async function allocateVersion(deps: RegistrationDeps, namespace: string, model: string, claim: string): Promise<number> {
  let next = highestKnown(deps, namespace, model) + 1;
  if (deps.metadata.healthy()) {
    // The database's counter survives deleted ModelVersions and runs, so numbers are never reused.
    try {
      next = await deps.metadata.nextModelVersion(namespace, model, { claim, atLeast: next });
    } catch {
      // Without the database the Kubernetes view alone decides; it is recorded later.
    }
  }
  deps.issuedVersions.set(`${namespace}/${model}`, Math.max(next, deps.issuedVersions.get(`${namespace}/${model}`) ?? 0));
  return next;
}

/** Index values: the models a run reserved versions of (for highestKnown). */
export const modelIndexOfRun = (run: PipelineRun): string[] =>
  [...new Set((run.status?.steps ?? []).flatMap((s) => (s.models ?? []).map((m) => `model:${run.metadata.namespace}/${m.name}`)))];

/**
 * Reserves versions for newly succeeded steps that register models (mutates the status to
 * write), and marks them ModelsRegistered=Unknown in that same status: a crash before the
 * ModelVersions exist leaves the mark to finish from.
 */
export async function reserveModelVersions(
  deps: RegistrationDeps, run: PipelineRun, status: PipelineRunStatus, configuration: PipelineConfiguration, now: Date,
): Promise<void> {
  const namespace = run.metadata.namespace ?? '';
  const reserved: string[] = [];
  for (const step of status.steps ?? []) {
    if (step.phase !== 'Succeeded' || step.models) continue;
    const spec = configuration.spec.steps.find((s) => s.name === step.name);
    const registers = (spec?.outputs ?? []).filter((o) => o.type === 'model' && o.register);
    if (registers.length === 0) continue;
    step.models = [];
    for (const output of registers) {
      const claim = `${run.metadata.uid}/${step.name}/${output.name}`;
      const version = await allocateVersion(deps, namespace, output.register!.name, claim);
      step.models.push({ name: output.register!.name, version });
      reserved.push(modelVersionName(output.register!.name, version));
    }
  }
  if (reserved.length > 0) setModelsRegistered(status, 'Unknown', Reasons.Registering, `registering ${reserved.join(', ')}`, now);
}

/** Sets the run's ModelsRegistered condition in `status` (mutates it). */
export function setModelsRegistered(status: PipelineRunStatus, value: Condition['status'], reason: string, message: string, now: Date): void {
  status.conditions = setCondition(status.conditions, { type: CONDITION_MODELS_REGISTERED, status: value, reason, message }, now);
}

/** Whether the run has reserved versions that may not all exist yet (Unknown), or was refused one (False). */
export function registrationPending(status: PipelineRunStatus | undefined): boolean {
  const registration = findCondition(status?.conditions, CONDITION_MODELS_REGISTERED)?.status;
  return registration === 'Unknown' || registration === 'False';
}

/**
 * The ModelVersions a run reserved for models its steps produced, and whether each exists
 * (in the cache, or among `created` that the cache may not hold yet). A reservation of a step
 * that produced nothing (it failed) is not one.
 */
export function reservedVersions(
  modelVersions: Cache<ModelVersion>, namespace: string, status: PipelineRunStatus | undefined, created: readonly ModelVersion[] = [],
): { name: string; exists: boolean }[] {
  const createdNames = new Set(created.map((v) => v.metadata.name));
  return (status?.steps ?? [])
    .filter((step) => (step.outputs?.length ?? 0) > 0)
    .flatMap((step) => step.models ?? [])
    .map((m) => modelVersionName(m.name, m.version))
    .map((name) => ({ name, exists: createdNames.has(name) || modelVersions.get(`${namespace}/${name}`) !== undefined }));
}

/** Creates the ModelVersions a run's status reserved and that do not exist yet. */
export async function ensureModelVersions(
  deps: RegistrationDeps, run: PipelineRun, status: PipelineRunStatus, configuration: PipelineConfiguration,
  bound: { pipeline: string; specHash: string } | undefined,
): Promise<ModelVersion[]> {
  const namespace = run.metadata.namespace ?? '';
  const created: ModelVersion[] = [];
  for (const step of status.steps ?? []) {
    const spec = configuration.spec.steps.find((s) => s.name === step.name);
    for (const reservation of step.models ?? []) {
      const name = modelVersionName(reservation.name, reservation.version);
      if (deps.modelVersions.get(`${namespace}/${name}`)) continue;
      const output = (spec?.outputs ?? []).find((o) => o.register?.name === reservation.name);
      const artifact = step.outputs?.find((o) => o.name === output?.name);
      if (!artifact) continue;
      const metrics = step.metrics ?? {};
      const decision = promotionFor(deps, namespace, reservation.name, configuration, metrics);
      const version: ModelVersion = {
        apiVersion: API_VERSION,
        kind: 'ModelVersion',
        metadata: {
          name,
          namespace,
          labels: { [LABEL_MODEL]: reservation.name, [LABEL_RUN_UID]: run.metadata.uid ?? '', 'app.kubernetes.io/managed-by': 'ferry' },
          annotations: {
            [ANNOTATION_STAGE_BY]: `ferry promotion policy of pipeline "${configuration.pipeline.name}" (run "${run.metadata.name}")`,
            [ANNOTATION_STAGE_REASON]: decision.reason,
          },
        },
        spec: {
          modelName: reservation.name,
          version: reservation.version,
          artifact: { uri: artifact.uri, digest: artifact.digest },
          metrics,
          source: {
            pipeline: configuration.pipeline.name,
            run: run.metadata.name,
            step: step.name,
            configurationURI: status.configuration?.uri ?? '',
            configurationDigest: status.configuration?.digest ?? '',
          },
          ...(bound ? { inference: bound } : {}),
          stage: decision.stage,
        },
      };
      try {
        created.push(await deps.client.create<ModelVersion>(MODEL_VERSIONS, namespace, version));
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        // Created by an earlier pass of this run (fine), or taken by another: then it is not ours.
        const existing = await deps.client.get<ModelVersion>(MODEL_VERSIONS, namespace, name);
        if (existing.metadata.labels?.[LABEL_RUN_UID] !== run.metadata.uid) {
          throw new Error(`ModelVersion ${namespace}/${name} exists and was not registered by run ${run.metadata.name}`);
        }
        created.push(existing); // ours (a create whose reply was lost): the cache may not hold it yet
      }
    }
  }
  return created;
}

function promotionFor(
  deps: RegistrationDeps, namespace: string, model: string, configuration: PipelineConfiguration, metrics: Record<string, number>,
): { stage: 'None' | 'Staging' | 'Production'; reason: string } {
  const policy = (configuration.spec.promotion ?? []).find((p) => p.model === model);
  if (!policy) return { stage: 'None', reason: 'registered; no promotion policy' };
  const holder = deps.modelVersions
    .byIndex(`model:${namespace}/${model}`)
    .filter((v) => v.spec.stage === policy.stage)
    .sort((a, b) => b.spec.version - a.spec.version)[0];
  const decision = evaluatePromotion(policy, metrics, holder ? { name: holder.metadata.name, metrics: holder.spec.metrics ?? {} } : undefined);
  return decision.promote
    ? { stage: policy.stage, reason: `promoted to ${policy.stage}: ${decision.reason}` }
    : { stage: 'None', reason: `not promoted to ${policy.stage}: ${decision.reason}` };
}
