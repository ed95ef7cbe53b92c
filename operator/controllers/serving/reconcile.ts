// Keeps one Pipeline's endpoint: the version its model reference names, served by a Deployment
// that rolls to the next version readiness-gated, and goes back to the version it served when
// the next one is not ready within rolloutTimeoutSeconds. The Deployment is the record of what
// is being rolled out (its template's intent annotation, the rollout's start), the Pipeline's
// status of what answers; so an operator that dies mid-rollout finishes it on its next pass.
import type { IReplicaSet } from 'kubernetes-models/apps/v1/ReplicaSet';
import type { KubeObject } from '../../api/v1alpha1/common.ts';
import { EventReasons, Reasons } from '../../api/v1alpha1/conditions.ts';
import { ANNOTATION_GRANT_EXPIRES_AT, ANNOTATION_MODEL_VERSION, ANNOTATION_ROLLOUT_STARTED_AT, ANNOTATION_SERVING_INTENT, LABEL_ENDPOINT } from '../../api/v1alpha1/labels.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { ServedVersion, ServingSpec, ServingStatus } from '../../api/v1alpha1/serving.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { CrossNamespaceReferenceError, uriInNamespace } from '../../artifacts/tenancy.ts';
import type { ImageResolutionQueue } from '../../images/resolution-queue.ts';
import type { RegistryCredentials } from '../../images/resolver.ts';
import type { AgentSettings } from '../../kube/agent-pod.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage, isAlreadyExists, isNotFound } from '../../kube/errors.ts';
import type { Pod } from '../../kube/pod.ts';
import { DEPLOYMENTS, PODS, REPLICA_SETS, SERVICES } from '../../kube/resources.ts';
import type { MetadataBacklog } from '../../metadata/backlog.ts';
import type { MetadataStore } from '../../metadata/records.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { describeReference, resolveModelReference } from '../../models/references.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import { inNamespace, type ModelVersionCache } from '../indexes.ts';
import {
  MODEL_GRANT_SECONDS, MODEL_INPUT, buildDeployment, buildPodTemplate, buildService, endpointName, endpointUrl, servingIntent,
  type Deployment, type EndpointInput, type Service,
} from './endpoint-objects.ts';
import { diagnoseRollout } from './rollout-diagnosis.ts';
import {
  becameLive, describeServed, liveCondition, notServingCondition, refusedCondition, rollingOutCondition, stoppedServing,
  type ServingCondition,
} from './serving-status.ts';

export interface ServingDeps {
  client: KubeClient;
  deployments: Cache<Deployment>;
  services: Cache<Service>;
  modelVersions: ModelVersionCache;
  store: ArtifactStore;
  agent: AgentSettings;
  images: Pick<ImageResolutionQueue, 'request'>;
  credentialsFrom(namespace: string, secrets: string[]): Promise<(registry: string) => RegistryCredentials | undefined>;
  metadata: MetadataStore;
  metadataBacklog: MetadataBacklog;
  /** The serving periods last recorded in PostgreSQL, per Pipeline key. */
  recordedServing: Map<string, string>;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

export type EndpointEvent = [type: 'Normal' | 'Warning', reason: string, message: string];

export interface EndpointOutcome {
  /** The endpoint's status; undefined when the Pipeline declares none. */
  serving?: ServingStatus;
  condition?: ServingCondition;
  events: EndpointEvent[];
  requeueAfterMs?: number;
  requeue?: boolean;
}

/** The key images are resolved under (runs use `namespace/name`: a Pipeline and a run may share a name). */
export const endpointResolutionKey = (namespace: string, pipeline: string) => `endpoint:${namespace}/${pipeline}`;

const iso = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');
const owned = (pipeline: Pipeline, object: { metadata: { ownerReferences?: Array<{ uid: string }> } } | undefined) =>
  object?.metadata.ownerReferences?.some((o) => o.uid === pipeline.metadata.uid) === true;
const templateAnnotation = (deployment: Deployment | undefined, key: string) => deployment?.spec?.template.metadata?.annotations?.[key];

/** A version the endpoint could serve: the one the reference names, unless it is Archived. */
function desiredVersion(deps: ServingDeps, namespace: string, serving: ServingSpec): { version: ModelVersion } | { error: string } {
  const resolution = resolveModelReference(serving.model, deps.modelVersions.byIndex('model', inNamespace(namespace, serving.model.name)));
  if ('error' in resolution) return resolution;
  if (resolution.version.spec.stage === 'Archived') return { error: `${describeReference(serving.model)} is ${resolution.version.metadata.name}, which is Archived` };
  return resolution;
}

const servedVersion = (version: ModelVersion, image: string | undefined, intent: string): ServedVersion => ({
  modelVersion: version.metadata.name, version: version.spec.version, digest: version.spec.artifact.digest, ...(image ? { image } : {}), intent,
});

export async function reconcileEndpoint(deps: ServingDeps, pipeline: Pipeline): Promise<EndpointOutcome> {
  const namespace = pipeline.metadata.namespace ?? '';
  const name = endpointName(pipeline.metadata.name);
  const key = inNamespace(namespace, name);
  const deployment = deps.deployments.get(key);
  const service = deps.services.get(key);
  const now = deps.clock.now();
  const at = iso(now);
  const generation = pipeline.metadata.generation ?? 0;
  const serving = pipeline.spec.serving;
  const events: EndpointEvent[] = [];

  if (!serving) {
    // The endpoint was removed from the spec: so are its objects.
    if (owned(pipeline, deployment)) await deps.client.delete(DEPLOYMENTS, namespace, name, { uid: deployment!.metadata.uid });
    if (owned(pipeline, service)) await deps.client.delete(SERVICES, namespace, name, { uid: service!.metadata.uid });
    const previous = pipeline.status?.serving;
    if (previous?.live) {
      await recordServing(deps, pipeline, stoppedServing(previous, at));
      events.push(['Normal', EventReasons.ScaledToZero, `the endpoint was removed; ${describeServed(previous.live)} no longer answers`]);
    }
    return { events };
  }

  let status: ServingStatus = {
    ...pipeline.status?.serving,
    service: name,
    url: endpointUrl(name, namespace, serving.port),
    model: serving.model.name,
    replicas: deployment?.status?.replicas ?? 0,
    readyReplicas: deployment?.status?.readyReplicas ?? 0,
  };
  if (status.model !== pipeline.status?.serving?.model) delete status.failed;
  const done = async (condition: ServingCondition, extra: Partial<EndpointOutcome> = {}): Promise<EndpointOutcome> => {
    const requeue = await recordServing(deps, pipeline, status);
    return { serving: status, condition, events, ...extra, ...(requeue ? { requeue: true } : {}) };
  };

  for (const [kind, object] of [['Deployment', deployment], ['Service', service]] as const) {
    if (object && !owned(pipeline, object)) {
      return done(notServingCondition(Reasons.EndpointConflict, `a ${kind} named ${name} exists in ${namespace} and is not this Pipeline's endpoint`, generation));
    }
  }

  const desired = desiredVersion(deps, namespace, serving);
  if ('error' in desired) {
    // Nothing to serve: scale to zero (the objects stay for the next version), never leave an old version answering.
    if (deployment && (deployment.spec?.replicas ?? 0) > 0) {
      await deps.client.mergePatch(DEPLOYMENTS, namespace, name, { spec: { replicas: 0 } });
      events.push(['Warning', EventReasons.ScaledToZero, `${desired.error}: scaled to zero`]);
    }
    status = stoppedServing(status, at);
    deps.metrics.endpointLiveVersion.set({ endpoint: key, model: serving.model.name }, 0);
    const last = status.history?.at(-1);
    const after = last?.until ? `; it served ${last.modelVersion} until ${last.until}` : '';
    return done(notServingCondition(Reasons.NoServableVersion, `${desired.error}; nothing is served${deployment ? ' (scaled to zero)' : ''}${after}`, generation));
  }
  const version = desired.version;
  const intent = servingIntent(serving, version);

  if (status.failed?.intent === intent) {
    // Tried and given up: not again until the version or the serving spec changes.
    return done(refusedCondition(status, status.failed.reason, `${status.failed.modelVersion} cannot be served: ${status.failed.message}`, generation));
  }
  const refuse = (reason: string, message: string) => {
    status = { ...status, failed: { ...servedVersion(version, undefined, intent), reason, message, at } };
    events.push(['Warning', reason, `${version.metadata.name} cannot be served: ${message}`]);
    return done(refusedCondition(status, reason, `${version.metadata.name} cannot be served: ${message}`, generation));
  };

  const current = templateAnnotation(deployment, ANNOTATION_SERVING_INTENT);
  const expiresAt = Date.parse(templateAnnotation(deployment, ANNOTATION_GRANT_EXPIRES_AT) ?? '');
  const renewalDue = Number.isFinite(expiresAt) && expiresAt - now.getTime() < (MODEL_GRANT_SECONDS * 1000) / 3;
  if (!deployment || current !== intent || renewalDue) {
    // A new Pod template: another version, another serving spec, or a model URL to renew.
    let uri: string;
    try {
      uri = uriInNamespace(deps.store, version.spec.artifact.uri, namespace, `the artifact of ${version.metadata.name}`);
    } catch (err) {
      if (err instanceof CrossNamespaceReferenceError) return refuse(Reasons.CrossNamespaceReference, err.message);
      throw err;
    }
    // A renewal keeps the pinned image: a tag that moved since must not change what answers.
    let image = deployment && current === intent ? deployment.spec?.template.spec?.containers[0]?.image : undefined;
    if (image === undefined) {
      const pinned = await pinImage(deps, pipeline, serving);
      if ('refused' in pinned) return refuse(pinned.reason, pinned.refused);
      if ('waiting' in pinned) return done(refusedCondition(status, pinned.reason, pinned.waiting, generation), pinned.retry ? { requeue: true } : {});
      image = pinned.image;
    }
    const expires = new Date(now.getTime() + MODEL_GRANT_SECONDS * 1000);
    const grant = deps.store.grants ? await deps.store.grants.readGrant(uri, expires) : undefined;
    const input: EndpointInput = {
      pipeline, serving, version, image, agent: deps.agent,
      model: { name: MODEL_INPUT, uri, digest: version.spec.artifact.digest, ...(grant ? { url: grant.url, ...(grant.headers ? { headers: grant.headers } : {}) } : {}) },
      ...(grant ? { grantExpiresAt: iso(expires) } : {}),
    };
    const desiredDeployment = buildDeployment(input, serving.replicas, at);
    if (!owned(pipeline, service)) await createOwned(deps, pipeline, SERVICES, buildService(pipeline, serving));
    if (!deployment) await createOwned(deps, pipeline, DEPLOYMENTS, desiredDeployment);
    else await deps.client.replace(DEPLOYMENTS, { ...desiredDeployment, metadata: { ...deployment.metadata, ...desiredDeployment.metadata, resourceVersion: deployment.metadata.resourceVersion } });
    const target = servedVersion(version, image, intent);
    status = { ...status, rollout: { ...target, startedAt: at }, ...(grant ? { grantExpiresAt: iso(expires) } : {}) };
    if (current !== intent) {
      events.push(['Normal', EventReasons.RolloutStarted, `rolling out ${describeServed(target)}${status.live ? ` to replace ${status.live.modelVersion}` : ''}`]);
      deps.log.info('endpoint rollout started', { namespace, pipeline: pipeline.metadata.name, modelVersion: version.metadata.name, image });
    }
    return done(rollingOutCondition(status, target, generation), { requeueAfterMs: serving.rolloutTimeoutSeconds * 1000 });
  }

  // The template is the desired one: follow its rollout.
  if (owned(pipeline, service) && service!.spec?.ports?.[0]?.port !== serving.port) {
    await deps.client.replace(SERVICES, { ...buildService(pipeline, serving), metadata: { ...service!.metadata, resourceVersion: service!.metadata.resourceVersion } });
  } else if (!service) {
    await createOwned(deps, pipeline, SERVICES, buildService(pipeline, serving));
  }
  if ((deployment.spec?.replicas ?? 0) !== serving.replicas) {
    await deps.client.mergePatch(DEPLOYMENTS, namespace, name, { spec: { replicas: serving.replicas } });
  }
  const image = deployment.spec?.template.spec?.containers[0]?.image;
  const target = servedVersion(version, image, intent);
  if (rolledOut(deployment, serving.replicas)) {
    const wasLive = status.live;
    if (wasLive?.intent !== intent) {
      status = becameLive(status, target, at);
      events.push(['Normal', EventReasons.RolloutSucceeded, `${describeServed(target)} answers at ${status.url}${wasLive && wasLive.modelVersion !== target.modelVersion ? `, replacing ${wasLive.modelVersion}` : ''}`]);
      deps.metrics.endpointRollouts.inc({ endpoint: key, model: serving.model.name, result: 'succeeded' });
      deps.log.info('endpoint rollout succeeded', { namespace, pipeline: pipeline.metadata.name, modelVersion: target.modelVersion });
    } else {
      const { rollout: _rollout, ...rest } = status;
      status = rest;
    }
    deps.metrics.endpointLiveVersion.set({ endpoint: key, model: serving.model.name }, status.live!.version);
    const renewAt = Date.parse(status.grantExpiresAt ?? '') - (MODEL_GRANT_SECONDS * 1000) / 3;
    return done(liveCondition(status as ServingStatus & { live: NonNullable<ServingStatus['live']> }, generation),
      Number.isFinite(renewAt) ? { requeueAfterMs: Math.max(1000, Math.min(renewAt - now.getTime(), 24 * 3600_000)) } : {});
  }

  const startedAt = Date.parse(deployment.metadata.annotations?.[ANNOTATION_ROLLOUT_STARTED_AT] ?? status.rollout?.startedAt ?? at);
  const remainingMs = startedAt + serving.rolloutTimeoutSeconds * 1000 - now.getTime();
  status = { ...status, rollout: { ...target, startedAt: iso(new Date(startedAt)) } };
  if (remainingMs > 0 || status.live?.intent === intent) {
    return done(rollingOutCondition(status, target, generation), { requeueAfterMs: Math.max(1000, remainingMs) });
  }
  // Not ready in time: say why, and go back to what answered before.
  const pods = (await deps.client.list<Pod>(PODS, namespace, `${LABEL_ENDPOINT}=${name}`)).items
    .filter((p) => p.metadata.annotations?.[ANNOTATION_SERVING_INTENT] === intent);
  const why = `not ready within ${serving.rolloutTimeoutSeconds} s: ${diagnoseRollout(pods, serving)}`;
  const { rollout: _rollout, ...rest } = status;
  status = { ...rest, failed: { ...target, reason: Reasons.RolloutFailed, message: why, at } };
  deps.metrics.endpointRollouts.inc({ endpoint: key, model: serving.model.name, result: 'rolled_back' });
  const restored = status.live ? await restoreLive(deps, pipeline, deployment, status.live) : false;
  if (!restored) {
    await deps.client.delete(DEPLOYMENTS, namespace, name, { uid: deployment.metadata.uid });
    if (owned(pipeline, service)) await deps.client.delete(SERVICES, namespace, name, { uid: service!.metadata.uid });
    status = stoppedServing(status, at);
    deps.metrics.endpointLiveVersion.set({ endpoint: key, model: serving.model.name }, 0);
  }
  const outcome = restored ? `went back to ${status.live!.modelVersion}` : 'removed the Deployment and Service';
  events.push(['Warning', EventReasons.RolloutFailed, `${target.modelVersion} ${why}; ${outcome}`]);
  deps.log.warn('endpoint rollout failed', { namespace, pipeline: pipeline.metadata.name, modelVersion: target.modelVersion, reason: why, outcome });
  return done(refusedCondition(status, Reasons.RolloutFailed, `${target.modelVersion} cannot be served: ${why}`, generation));
}

type Pinning = { image: string } | { refused: string; reason: string } | { waiting: string; reason: string; retry?: boolean };

/** The server image pinned by digest (off the workers, as runs' images are: images/resolution-queue.ts). */
async function pinImage(deps: ServingDeps, pipeline: Pipeline, serving: ServingSpec): Promise<Pinning> {
  const namespace = pipeline.metadata.namespace ?? '';
  if (pipeline.spec.imagePolicy === 'RequireDigest' && !serving.image.includes('@sha256:')) {
    return { reason: Reasons.ImageNotPinned, refused: `the server image ${serving.image} has no digest and the pipeline's imagePolicy is RequireDigest` };
  }
  const credentials = await deps.credentialsFrom(namespace, (pipeline.spec.imagePullSecrets ?? []).map((s) => s.name));
  const answer = await deps.images.request({ key: endpointResolutionKey(namespace, pipeline.metadata.name), namespace, references: [['server', serving.image]], credentials });
  if ('pending' in answer) return { reason: Reasons.ResolvingImages, waiting: `resolving the server image ${serving.image}` };
  const resolved = answer.done.get('server')!;
  if (!resolved.error) return { image: resolved.image.pinned };
  if (resolved.error.transient) return { reason: Reasons.ImageResolutionFailed, waiting: `the server image: ${resolved.error.message} (retrying)`, retry: true };
  return { reason: Reasons.ImageResolutionFailed, refused: `the server image: ${resolved.error.message}` };
}

/** Every replica runs the current template and is available, and no other replica is left. */
function rolledOut(deployment: Deployment, replicas: number): boolean {
  const s = deployment.status;
  if (!s || (s.observedGeneration ?? 0) < (deployment.metadata.generation ?? 0)) return false;
  return (s.updatedReplicas ?? 0) === replicas && (s.availableReplicas ?? 0) >= replicas && (s.replicas ?? 0) === replicas;
}

/** Creates an object of the endpoint; one left by an earlier pass whose reply was lost is taken as it is. */
async function createOwned<T extends Deployment | Service>(deps: ServingDeps, pipeline: Pipeline, resource: typeof DEPLOYMENTS, object: T): Promise<void> {
  try {
    await deps.client.create(resource, pipeline.metadata.namespace, object);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    const existing = await deps.client.get<T>(resource, pipeline.metadata.namespace, object.metadata.name);
    if (!owned(pipeline, existing)) throw new Error(`a ${resource.kind} named ${object.metadata.name} exists in ${pipeline.metadata.namespace} and is not this Pipeline's endpoint`);
  }
}

/**
 * Puts the template of the live version back, from its ReplicaSet (what `kubectl rollout undo`
 * does), or rebuilt when that ReplicaSet is gone. False when neither is possible.
 */
async function restoreLive(deps: ServingDeps, pipeline: Pipeline, deployment: Deployment, live: NonNullable<ServingStatus['live']>): Promise<boolean> {
  const namespace = pipeline.metadata.namespace ?? '';
  const name = deployment.metadata.name;
  const sets = (await deps.client.list<IReplicaSet & KubeObject>(REPLICA_SETS, namespace, `${LABEL_ENDPOINT}=${name}`)).items
    .filter((rs) => rs.metadata.ownerReferences?.some((o) => o.uid === deployment.metadata.uid))
    .filter((rs) => rs.spec?.template?.metadata?.annotations?.[ANNOTATION_SERVING_INTENT] === live.intent);
  let template = sets[0]?.spec?.template;
  if (template) {
    const { 'pod-template-hash': _hash, ...labels } = template.metadata?.labels ?? {};
    template = { ...template, metadata: { ...template.metadata, labels } };
  } else {
    const version = deps.modelVersions.get(inNamespace(namespace, live.modelVersion));
    if (!version || !live.image || !pipeline.spec.serving) return false;
    const expires = new Date(deps.clock.now().getTime() + MODEL_GRANT_SECONDS * 1000);
    const grant = deps.store.grants ? await deps.store.grants.readGrant(version.spec.artifact.uri, expires) : undefined;
    template = buildPodTemplate({
      pipeline, serving: pipeline.spec.serving, version, image: live.image, agent: deps.agent,
      model: { name: MODEL_INPUT, uri: version.spec.artifact.uri, digest: version.spec.artifact.digest, ...(grant ? { url: grant.url } : {}) },
      ...(grant ? { grantExpiresAt: iso(expires) } : {}),
    });
  }
  try {
    await deps.client.replace(DEPLOYMENTS, {
      ...deployment,
      metadata: { ...deployment.metadata, annotations: { ...deployment.metadata.annotations, [ANNOTATION_ROLLOUT_STARTED_AT]: iso(deps.clock.now()) } },
      spec: { ...deployment.spec!, template },
    });
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  deps.log.info('endpoint restored to the live version', { namespace, pipeline: pipeline.metadata.name, modelVersion: template.metadata?.annotations?.[ANNOTATION_MODEL_VERSION], fromReplicaSet: sets[0]?.metadata.name });
  return true;
}

/**
 * Writes the endpoint's serving periods to PostgreSQL (idempotent, oldest first, so a late
 * replay closes each period where the next began). Returns whether to retry with backoff.
 */
async function recordServing(deps: ServingDeps, pipeline: Pipeline, status: ServingStatus): Promise<boolean> {
  const namespace = pipeline.metadata.namespace ?? '';
  const key = inNamespace(namespace, pipeline.metadata.name);
  const history = status.history ?? [];
  const signature = JSON.stringify(history.map((h) => [h.modelVersion, h.from, h.until ?? '']));
  if (history.length === 0 || deps.recordedServing.get(key) === signature) return false;
  const outcome = await deps.metadataBacklog.write(deps.metadata, key, async () => {
    for (const [i, period] of history.entries()) {
      await deps.metadata.recordEndpointServing({
        namespace, endpoint: pipeline.metadata.name, at: period.from,
        live: { model: status.model, version: period.version, artifactDigest: period.digest },
      });
      const next = history[i + 1];
      if (period.until !== undefined && next?.from !== period.until) {
        await deps.metadata.recordEndpointServing({ namespace, endpoint: pipeline.metadata.name, at: period.until });
      }
    }
  });
  if (outcome.kind === 'stored') deps.recordedServing.set(key, signature);
  else if (outcome.error !== undefined) deps.log.warn('serving periods not recorded in the metadata store; will retry', { namespace, pipeline: pipeline.metadata.name, error: errorMessage(outcome.error) });
  return outcome.kind === 'retry';
}

