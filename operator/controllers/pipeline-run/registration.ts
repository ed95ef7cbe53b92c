// Registering models: a step that succeeded with a `model` output that declares `register`
// becomes ModelVersion `<model>-v<N>`, already in the stage its Pipeline's promotion policy
// decides. N increases per model and namespace and is never reused (the database's counter, the
// versions and reservations in the caches). The ModelVersion is the reservation: it carries the
// run's uid in a label and its step in spec.source, so a pass repeated after a crash finds the
// version it created (in the cache at once, like Pods) instead of making a second one.
import { API_VERSION, type Condition } from '../../api/v1alpha1/common.ts';
import { CONDITION_MODELS_REGISTERED, Reasons, findCondition } from '../../api/v1alpha1/conditions.ts';
import { ANNOTATION_STAGE_BY, ANNOTATION_STAGE_REASON, LABEL_MANAGED_BY, LABEL_MODEL, LABEL_RUN_UID, MANAGED_BY } from '../../api/v1alpha1/labels.ts';
import { modelVersionName, type ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun, PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';

type OutputSpec = NonNullable<StepSpec['outputs']>[number];
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage } from '../../kube/errors.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import { evaluatePromotion } from '../../models/promotion.ts';
import { inNamespace, type ModelVersionCache, type RunCache } from '../indexes.ts';
import { createModelVersion } from './apply.ts';
import { truncate } from './pod-status.ts';

export interface RegistrationDeps {
  client: KubeClient;
  runs: RunCache;
  modelVersions: ModelVersionCache;
  metadata: MetadataStore;
  /** Version numbers this process handed out, by `namespace/model`, so concurrent runs never share one. */
  issuedVersions: Map<string, number>;
  /**
   * The number each registering output was given, by claim: a retry after a create whose reply
   * was lost (and before the watch shows the object) gets the same number back and adopts it.
   */
  claimedVersions: Map<string, number>;
}

/** What registering a run's models did: the versions each step now has, and a refusal if one was refused. */
export interface RegistrationOutcome {
  /** Step name → the versions it registered (every one of the step's register outputs, once all exist). */
  models: Map<string, NonNullable<StepStatus['models']>>;
  created: ModelVersion[];
  /** Why a version could not be created (an admission policy, a quota, the API down); retried with backoff. */
  refused?: string;
}

/** The inference Pipeline bound to the versions, with its spec hash. */
export type BoundInference = { pipeline: string; specHash: string } | undefined;

/** How many numbers a registration tries when another run took the one it picked. */
const MAX_NUMBER_ATTEMPTS = 5;

/** A step's outputs that register a model. */
const registersOf = (configuration: PipelineConfiguration, step: string): OutputSpec[] =>
  (configuration.spec.steps.find((s) => s.name === step)?.outputs ?? []).filter((o) => o.type === 'model' && o.register);

/** Succeeded steps that register models and whose versions are not all recorded in status yet. */
function stepsToRegister(status: PipelineRunStatus, configuration: PipelineConfiguration): StepStatus[] {
  return (status.steps ?? []).filter((step) => {
    if (step.phase !== 'Succeeded' || (step.outputs?.length ?? 0) === 0) return false;
    const registers = registersOf(configuration, step.name);
    return registers.length > 0 && registers.some((o) => !(step.models ?? []).some((m) => m.name === o.register!.name));
  });
}

/**
 * Whether this pass must register: a step succeeded whose versions status does not record, or
 * an earlier try is unfinished (ModelsRegistered Unknown, from an older operator) or was refused
 * (False). Once True, a version the user deletes is not brought back.
 */
export function registrationPending(status: PipelineRunStatus, configuration: PipelineConfiguration | undefined): boolean {
  const shown = findCondition(status.conditions, CONDITION_MODELS_REGISTERED)?.status;
  if (shown === 'Unknown' || shown === 'False') return true;
  return configuration !== undefined && stepsToRegister(status, configuration).length > 0;
}

/**
 * Creates (or finds among `mine`, the versions the run created before) every ModelVersion the
 * run's succeeded steps register. Never throws: a refusal is reported.
 */
export async function registerModels(
  deps: RegistrationDeps, run: PipelineRun, status: PipelineRunStatus, configuration: PipelineConfiguration,
  mine: readonly ModelVersion[], bound: BoundInference,
): Promise<RegistrationOutcome> {
  const outcome: RegistrationOutcome = { models: new Map(), created: [] };
  const settledBefore = findCondition(status.conditions, CONDITION_MODELS_REGISTERED)?.status === 'True';
  for (const step of (status.steps ?? []).filter((s) => s.phase === 'Succeeded' && (s.outputs?.length ?? 0) > 0)) {
    const registers = registersOf(configuration, step.name);
    if (registers.length === 0) continue;
    const recorded = step.models ?? [];
    if (settledBefore && registers.every((o) => recorded.some((m) => m.name === o.register!.name))) {
      outcome.models.set(step.name, recorded); // registered earlier; a version deleted since is not recreated
      continue;
    }
    const models: NonNullable<StepStatus['models']> = [];
    for (const output of registers) {
      const model = output.register!.name;
      const existing = mine.find((v) => v.spec.modelName === model && v.spec.source?.step === step.name);
      if (existing) {
        models.push({ name: model, version: existing.spec.version });
        continue;
      }
      try {
        const version = await createVersion(deps, run, status, step, output, configuration, bound, recorded.find((m) => m.name === model)?.version);
        outcome.created.push(version);
        models.push({ name: model, version: version.spec.version });
      } catch (err) {
        outcome.refused = truncate(`cannot register the run's models: ${errorMessage(err)}`, 1024);
        return outcome;
      }
    }
    outcome.models.set(step.name, models);
  }
  return outcome;
}

/**
 * Creates the next version of a model for one step output. `reserved` is a number an older
 * operator wrote into status before creating the object: it is kept. A number another run took
 * meanwhile is skipped for the next.
 */
async function createVersion(
  deps: RegistrationDeps, run: PipelineRun, status: PipelineRunStatus, step: StepStatus, output: OutputSpec,
  configuration: PipelineConfiguration, bound: BoundInference, reserved: number | undefined,
): Promise<ModelVersion> {
  const namespace = run.metadata.namespace ?? '';
  const model = output.register!.name;
  const artifact = step.outputs?.find((o) => o.name === output.name);
  if (!artifact) throw new Error(`step "${step.name}" published no output "${output.name}"`);
  const claim = `${run.metadata.uid}/${step.name}/${output.name}`;
  for (let attempt = 1; ; attempt++) {
    const number = reserved ?? (await allocateVersion(deps, namespace, model, claim, attempt));
    const version = buildModelVersion(deps, run, status, step, model, number, artifact, configuration, bound);
    const result = await createModelVersion(deps.client, version, run.metadata.uid ?? '');
    if (result.kind === 'created' || result.kind === 'ours') {
      deps.modelVersions.recordCreate(result.version, { announce: true }); // the ModelVersion controller takes it from here
      return result.version;
    }
    if (reserved !== undefined || attempt >= MAX_NUMBER_ATTEMPTS) {
      throw new Error(`ModelVersion ${namespace}/${version.metadata.name} exists and was not registered by run ${run.metadata.name}`);
    }
    deps.issuedVersions.set(`${namespace}/${model}`, Math.max(number, deps.issuedVersions.get(`${namespace}/${model}`) ?? 0));
  }
}

/** The highest version of a model anyone has: existing ModelVersions and reservations in run statuses. */
function highestKnown(deps: RegistrationDeps, namespace: string, model: string): number {
  const existing = deps.modelVersions.byIndex('model', inNamespace(namespace, model)).map((v) => v.spec.version);
  const reserved = deps.runs.byIndex('model', inNamespace(namespace, model))
    .flatMap((r) => (r.status?.steps ?? []).flatMap((s) => s.models ?? []))
    .filter((m) => m.name === model)
    .map((m) => m.version);
  return Math.max(0, deps.issuedVersions.get(`${namespace}/${model}`) ?? 0, ...existing, ...reserved);
}

/** `output` (`<run uid>/<step>/<output>`) identifies the registering output, so a retried registration gets the same number back. */
async function allocateVersion(deps: RegistrationDeps, namespace: string, model: string, output: string, attempt: number): Promise<number> {
  const claim = attempt === 1 ? output : `${output}#${attempt}`;
  const given = deps.claimedVersions.get(claim);
  if (given !== undefined) return given;
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
  deps.claimedVersions.set(claim, next);
  return next;
}

function buildModelVersion(
  deps: RegistrationDeps, run: PipelineRun, status: PipelineRunStatus, step: StepStatus, model: string, number: number,
  artifact: { uri: string; digest: string }, configuration: PipelineConfiguration, bound: BoundInference,
): ModelVersion {
  const namespace = run.metadata.namespace ?? '';
  const metrics = step.metrics ?? {};
  const decision = promotionFor(deps, namespace, model, configuration, metrics);
  return {
    apiVersion: API_VERSION,
    kind: 'ModelVersion',
    metadata: {
      name: modelVersionName(model, number),
      namespace,
      labels: { [LABEL_MODEL]: model, [LABEL_RUN_UID]: run.metadata.uid ?? '', [LABEL_MANAGED_BY]: MANAGED_BY },
      annotations: {
        [ANNOTATION_STAGE_BY]: `ferry promotion policy of pipeline "${configuration.pipeline.name}" (run "${run.metadata.name}")`,
        [ANNOTATION_STAGE_REASON]: decision.reason,
      },
    },
    spec: {
      modelName: model,
      version: number,
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
}

function promotionFor(
  deps: RegistrationDeps, namespace: string, model: string, configuration: PipelineConfiguration, metrics: Record<string, number>,
): { stage: 'None' | 'Staging' | 'Production'; reason: string } {
  const policy = (configuration.spec.promotion ?? []).find((p) => p.model === model);
  if (!policy) return { stage: 'None', reason: 'registered; no promotion policy' };
  const holder = deps.modelVersions
    .byIndex('model', inNamespace(namespace, model))
    .filter((v) => v.spec.stage === policy.stage)
    .sort((a, b) => b.spec.version - a.spec.version)[0];
  const decision = evaluatePromotion(policy, metrics, holder ? { name: holder.metadata.name, metrics: holder.spec.metrics ?? {} } : undefined);
  return decision.promote
    ? { stage: policy.stage, reason: `promoted to ${policy.stage}: ${decision.reason}` }
    : { stage: 'None', reason: `not promoted to ${policy.stage}: ${decision.reason}` };
}

/** The ModelsRegistered condition after a registration (pure): True naming every version, or False with the refusal. */
export function registrationCondition(status: PipelineRunStatus, outcome: RegistrationOutcome): Omit<Condition, 'lastTransitionTime'> {
  if (outcome.refused) return { type: CONDITION_MODELS_REGISTERED, status: 'False', reason: Reasons.RegistrationFailed, message: outcome.refused };
  const names = (status.steps ?? []).flatMap((s) => (s.models ?? []).map((m) => modelVersionName(m.name, m.version)));
  return { type: CONDITION_MODELS_REGISTERED, status: 'True', reason: Reasons.Registered, message: truncate(`registered ${names.join(', ')}`, 1024) };
}
