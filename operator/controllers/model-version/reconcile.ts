// Reconciles one ModelVersion: moves its observed stage to the desired one (spec.stage, set by a
// promotion policy, kubectl or GitOps), archiving the version it replaces in Production so at
// most one version per model is there; hands aliases to their newest holder; keeps a history
// of who changed the stage, when and why, in status and in the metadata store.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { CONDITION_READY, CONDITION_SERVING, EventReasons, setCondition } from '../../api/v1alpha1/conditions.ts';
import type { ModelVersion, ModelVersionStatus } from '../../api/v1alpha1/model-version.ts';
import { canonicalJson } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage } from '../../kube/errors.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { MODEL_VERSIONS } from '../../kube/resources.ts';
import type { MetadataBacklog } from '../../metadata/backlog.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { ANNOTATION_STAGE_BY, ANNOTATION_STAGE_REASON, LABEL_RUN_UID } from '../../api/v1alpha1/labels.ts';
import { inNamespace, type ModelVersionCache, type PipelineCache } from '../indexes.ts';
import { versionServing } from './endpoints.ts';

export interface ModelVersionDeps {
  client: KubeClient;
  modelVersions: ModelVersionCache;
  /** The Pipelines whose endpoints serve a model: what they say of its versions goes into their status. */
  pipelines?: PipelineCache;
  metadata: MetadataStore;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /** Stage last recorded in the metadata store per `namespace/name`; replayed after an outage or restart. */
  recorded: Map<string, string>;
  /** Versions whose record waits for the metadata store, by key; enqueued again when it answers. */
  metadataBacklog: MetadataBacklog;
}

const MAX_HISTORY = 64;
const FIELD_MANAGER = 'ferry-operator';
/** The actor named on the versions the operator archives (the one-Production rule below). */
const ARCHIVE_ACTOR = 'ferry (one Production version per model)';
/** How the operator names itself in ANNOTATION_STAGE_BY: this archive rule, or a registration (pipeline-run/registration.ts). */
const OPERATOR_ACTOR = /^ferry (\(one Production version per model\)|promotion policy of pipeline "[^"]*" \(run "[^"]*"\))$/;

interface ManagedField { manager?: string; time?: string; fieldsV1?: { 'f:spec'?: Record<string, unknown> } }

/** The field manager that last set spec.stage (the cache strips managedFields, so this reads the API). */
async function stageFieldManager(deps: ModelVersionDeps, version: ModelVersion): Promise<string> {
  const fresh = await deps.client.get<ModelVersion & { metadata: { managedFields?: ManagedField[] } }>(
    MODEL_VERSIONS, version.metadata.namespace, version.metadata.name,
  );
  return (fresh.metadata.managedFields ?? [])
    .filter((f) => f.fieldsV1?.['f:spec']?.['f:stage'] !== undefined)
    .sort((a, b) => (a.time ?? '').localeCompare(b.time ?? ''))
    .at(-1)?.manager ?? 'unknown';
}

/**
 * Who set spec.stage, and why. The actor is the ANNOTATION_STAGE_BY annotation: the chart's
 * promotion guard (charts/ferry/templates/promotion-policy.yaml) admits a stage change by anyone
 * but the operator's ServiceAccount only if that annotation equals the requester's username, so
 * it names the real Kubernetes user. A field manager is whatever the client sent (`kubectl
 * --field-manager=ferry-operator` is allowed to anyone) and never overrides the annotation.
 */
async function stageChangedBy(deps: ModelVersionDeps, version: ModelVersion): Promise<{ by: string; reason: string }> {
  const annotations = version.metadata.annotations ?? {};
  const claimed = annotations[ANNOTATION_STAGE_BY];
  // Cut to the status schema's bound for `by`: an over-long name must not block the status write.
  const userChange = (name: string) => {
    const by = name.slice(0, 253);
    return { by, reason: `stage set to ${version.spec.stage} by ${by}` };
  };
  if (claimed !== undefined && claimed !== '' && !OPERATOR_ACTOR.test(claimed)) return userChange(claimed);
  // The annotation is missing or is the operator's own. Under the guard that means the operator
  // made this change. Without the guard a user may have changed the stage and left the operator's
  // annotation behind: then the field manager is all there is to go by (unverified, as before).
  const manager = await stageFieldManager(deps, version);
  if (claimed && manager === FIELD_MANAGER) return { by: claimed, reason: annotations[ANNOTATION_STAGE_REASON] ?? '' };
  return userChange(manager);
}

/**
 * Records the version's current stage in the metadata store; the backlog decides whether to try
 * (metadata/backlog.ts). Returns whether the pass must be retried with backoff for it.
 */
async function recordVersion(deps: ModelVersionDeps, key: string, version: ModelVersion): Promise<boolean> {
  if (deps.recorded.get(key) === version.spec.stage) return false;
  const outcome = await deps.metadataBacklog.write(deps.metadata, key, () => deps.metadata.recordModelVersion({
    namespace: version.metadata.namespace ?? '',
    model: version.spec.modelName,
    version: version.spec.version,
    artifactUri: version.spec.artifact.uri,
    artifactDigest: version.spec.artifact.digest,
    ...(version.metadata.labels?.[LABEL_RUN_UID] ? { runUid: version.metadata.labels[LABEL_RUN_UID] } : {}),
    ...(version.spec.source?.run ? { runName: version.spec.source.run } : {}),
    ...(version.spec.source?.step ? { step: version.spec.source.step } : {}),
    ...(version.spec.source?.configurationDigest ? { configurationDigest: version.spec.source.configurationDigest } : {}),
    metrics: version.spec.metrics ?? {},
    stage: version.spec.stage,
  }));
  if (outcome.kind === 'stored') {
    deps.recorded.set(key, version.spec.stage);
  } else if (outcome.error !== undefined) {
    deps.log.warn('model version not recorded in the metadata store; will retry', { namespace: version.metadata.namespace, name: version.metadata.name, error: errorMessage(outcome.error), databaseReachable: outcome.kind === 'retry' });
  }
  return outcome.kind === 'retry';
}

export async function reconcileModelVersion(deps: ModelVersionDeps, key: string): Promise<ReconcileResult> {
  const cached = deps.modelVersions.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return {};
  const retry: ReconcileResult = (await recordVersion(deps, key, cached)) ? { requeue: true } : {};
  const version = structuredClone(cached);
  const { namespace, name } = version.metadata;
  const now = deps.clock.now();
  const siblings = deps.modelVersions.byIndex('model', inNamespace(namespace, version.spec.modelName)).filter((v) => v.metadata.name !== name);
  const status: ModelVersionStatus = { ...version.status, observedGeneration: version.metadata.generation ?? 0 };
  const events: Array<[string, string]> = [];

  if (status.stage !== version.spec.stage) {
    if (version.spec.stage === 'Production') {
      // NOTE: archive the old Production version first, so there is never a moment with two in status.
      for (const old of siblings.filter((v) => v.spec.stage === 'Production')) {
        await deps.client.mergePatch(MODEL_VERSIONS, namespace, old.metadata.name, {
          metadata: { annotations: { [ANNOTATION_STAGE_BY]: ARCHIVE_ACTOR, [ANNOTATION_STAGE_REASON]: `replaced in Production by ${name}` } },
          spec: { stage: 'Archived' },
        });
        events.push([EventReasons.Archived, `${old.metadata.name} moved to Archived: ${name} is now in Production`]);
      }
    }
    const { by, reason } = await stageChangedBy(deps, version);
    const at = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    status.history = [...(status.history ?? []), { stage: version.spec.stage, at, by, reason }].slice(-MAX_HISTORY);
    const from = status.stage ?? 'New';
    status.stage = version.spec.stage;
    events.push([EventReasons.StageChanged, `${from} → ${version.spec.stage}: ${reason}`]);
    deps.metrics.modelPromotions.inc({ stage: version.spec.stage });
    // NOTE: while the database is known to be down no worker waits on it; the status history keeps the transition.
    if (deps.metadata.healthy()) {
      try {
        await deps.metadata.recordStageTransition({ namespace: namespace ?? '', model: version.spec.modelName, version: version.spec.version, from, to: version.spec.stage, at, by, reason });
      } catch (err) {
        deps.log.warn('stage transition not recorded in the metadata store; the status history keeps it', { namespace, name, error: errorMessage(err) });
      }
    }
  }

  const aliases = version.spec.aliases ?? [];
  const acknowledged = status.aliases ?? [];
  for (const alias of aliases.filter((a) => !acknowledged.includes(a))) {
    // An alias names one version: its newest holder takes it from the others.
    for (const other of siblings.filter((v) => (v.spec.aliases ?? []).includes(alias))) {
      await deps.client.mergePatch(MODEL_VERSIONS, namespace, other.metadata.name, { spec: { aliases: (other.spec.aliases ?? []).filter((a) => a !== alias) } });
      events.push([EventReasons.AliasMoved, `alias "${alias}" moved from ${other.metadata.name} to ${name}`]);
    }
  }
  status.aliases = aliases.length > 0 ? aliases : undefined;
  if (!status.aliases) delete status.aliases;
  status.conditions = setCondition(status.conditions, {
    type: CONDITION_READY, status: 'True', reason: status.stage ?? 'None', message: `version ${version.spec.version} of model ${version.spec.modelName} is in ${status.stage}`,
    observedGeneration: version.metadata.generation ?? 0,
  }, now);

  if (deps.pipelines) {
    const serving = versionServing(version, deps.pipelines.byIndex('servedModel', inNamespace(namespace, version.spec.modelName)), version.metadata.generation ?? 0);
    delete status.endpoints;
    delete status.servingHistory;
    if (serving.endpoints) status.endpoints = serving.endpoints;
    if (serving.servingHistory) status.servingHistory = serving.servingHistory;
    status.conditions = serving.condition
      ? setCondition(status.conditions, serving.condition, now)
      : status.conditions?.filter((c) => c.type !== CONDITION_SERVING);
  }

  if (canonicalJson(status) === canonicalJson(cached.status ?? {})) return retry;
  const written = await deps.client.replaceStatus<ModelVersion>(MODEL_VERSIONS, { ...version, status });
  deps.modelVersions.recordWrite(written);
  const reference = { ...version, apiVersion: API_VERSION, kind: 'ModelVersion' };
  for (const [reason, message] of events) deps.events.record(reference, 'Normal', reason, message);
  if (events.length > 0) deps.log.info('model version reconciled', { namespace, name, stage: status.stage });
  return retry;
}
