// The first stage of a run: freeze its configuration once, before any step starts. Resolves
// the Pipeline (or the configuration to reproduce), parameters and image digests, writes the
// PipelineConfiguration to the artifact store with a write-once precondition, and hands it to
// the planner. Later passes read it back (verified by digest; cached in memory), so a run never
// changes, whatever happens to its Pipeline.
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRun, ResolvedParameter } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { LruCache } from '../../artifacts/config-cache.ts';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, type ArtifactStore } from '../../artifacts/store.ts';
import { CrossNamespaceReferenceError, uriInNamespace } from '../../artifacts/tenancy.ts';
import {
  CONFIGURATION_MAX_BYTES, ConfigurationDigestError, configurationKey, freezeConfiguration, parseConfiguration, reproduceConfiguration,
  serializeConfiguration, type PipelineConfiguration, type RunIdentity,
} from '../../configuration/pipeline-configuration.ts';
import type { ResolutionAnswer, ResolutionRequest } from '../../images/resolution-queue.ts';
import type { RegistryCredentials, ResolvedImage } from '../../images/resolver.ts';
import { sha256Hex } from '../../configuration/canonical-json.ts';
import { podMetadataProblem, stepPodsProblem, validatePipeline } from '../pipeline/validate.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { ExternalInput } from '../../configuration/pipeline-configuration.ts';
import { resolveModelReference } from '../../models/references.ts';
import { resolveParameters } from './parameters.ts';

export interface FreezeDeps {
  store: ArtifactStore;
  /** Resolves a run's images off the reconcile workers, namespaces in turn (images/resolution-queue.ts). */
  images: { request(request: ResolutionRequest): Promise<ResolutionAnswer> };
  configurations: LruCache<PipelineConfiguration>;
  operatorVersion: string;
  /** The Pipeline a run references, from the cache. */
  pipelineOf(namespace: string, name: string): Pipeline | undefined;
  /** Another run in the same namespace, from the cache. */
  runOf(namespace: string, name: string): PipelineRun | undefined;
  /** The registered versions of a model in a namespace, from the cache. */
  modelVersionsOf(namespace: string, model: string): ModelVersion[];
  /** Runs of a Pipeline in a namespace, from the cache. */
  runsOfPipeline(namespace: string, pipeline: string): PipelineRun[];
  /** Counts image resolutions (metrics). */
  onImageResolution?(result: 'resolved' | 'pinned' | 'failed'): void;
  /** What placement the admin allows steps (unset: any). */
  placement?: PlacementPolicy;
  /** Registry credentials from the named dockerconfigjson Secrets. */
  credentialsFrom(namespace: string, secrets: string[]): Promise<(registry: string) => RegistryCredentials | undefined>;
}

/**
 * What placement steps may ask for; a list left out allows any. nodeSelectorKeys also governs the
 * node label keys of nodeAffinity match expressions and the topology keys of pod (anti-)affinity.
 */
export interface PlacementPolicy {
  nodeSelectorKeys?: string[];
  tolerationKeys?: string[];
  priorityClasses?: string[];
  runtimeClasses?: string[];
}

/** Every node label key a step's scheduling names: nodeSelector, nodeAffinity expressions, pod (anti-)affinity topology keys. */
function nodeLabelKeys(step: StepSpec): Array<{ key: string; where: string }> {
  const keys = Object.keys(step.nodeSelector ?? {}).map((key) => ({ key, where: 'nodeSelector key' }));
  const node = step.affinity?.nodeAffinity;
  const terms = [
    ...(node?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? []),
    ...(node?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.preference),
  ];
  for (const term of terms) for (const e of term.matchExpressions ?? []) keys.push({ key: e.key, where: 'nodeAffinity key' });
  for (const pods of [step.affinity?.podAffinity, step.affinity?.podAntiAffinity]) {
    const podTerms = [...(pods?.requiredDuringSchedulingIgnoredDuringExecution ?? []), ...(pods?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p) => p.podAffinityTerm)];
    for (const term of podTerms) keys.push({ key: term.topologyKey, where: 'pod affinity topologyKey' });
  }
  return keys;
}

const allowed = (list: string[]) => list.join(', ') || 'none';

/** The first step placement the policy does not allow, as a message; undefined when all fit. */
export function placementProblem(steps: StepSpec[], policy: PlacementPolicy | undefined): string | undefined {
  for (const step of steps) {
    const { nodeSelectorKeys, tolerationKeys, priorityClasses, runtimeClasses } = policy ?? {};
    const label = nodeSelectorKeys ? nodeLabelKeys(step).find(({ key }) => !nodeSelectorKeys.includes(key)) : undefined;
    if (label) return `step "${step.name}": ${label.where} "${label.key}" is not allowed here (allowed: ${allowed(nodeSelectorKeys ?? [])})`;
    const toleration = tolerationKeys ? (step.tolerations ?? []).find((t) => !tolerationKeys.includes(t.key ?? '')) : undefined;
    if (toleration) return `step "${step.name}": a toleration of "${toleration.key ?? '(any key)'}" is not allowed here (allowed: ${allowed(tolerationKeys ?? [])})`;
    if (priorityClasses && step.priorityClassName !== undefined && !priorityClasses.includes(step.priorityClassName)) {
      return `step "${step.name}": priorityClassName "${step.priorityClassName}" is not allowed here (allowed: ${allowed(priorityClasses)})`;
    }
    if (runtimeClasses && step.runtimeClassName !== undefined && !runtimeClasses.includes(step.runtimeClassName)) {
      return `step "${step.name}": runtimeClassName "${step.runtimeClassName}" is not allowed here (allowed: ${allowed(runtimeClasses)})`;
    }
  }
  return undefined;
}

/** Images of one run resolved at once, and the longest a run's resolution may take. */
export const IMAGE_RESOLUTION_CONCURRENCY = 4;
export const IMAGE_RESOLUTION_DEADLINE_MS = 60_000;

/** What freezing decided: a configuration to run, or a reason the run cannot (yet) start. */
export type FreezeOutcome =
  | { kind: 'frozen'; configuration: PipelineConfiguration; uri: string; digest: string; written: boolean }
  /**
   * The run must wait: for an event (its Pipeline is created) or, with `backoff`, for a system
   * that is down (a registry): the reconcile is retried with the key's exponential backoff.
   */
  | { kind: 'waiting'; reason: string; message: string; backoff?: boolean }
  /** The run can never start; it fails with this reason. */
  | { kind: 'failed'; reason: string; message: string };

const identityOf = (run: PipelineRun): RunIdentity => ({
  namespace: run.metadata.namespace ?? '',
  name: run.metadata.name,
  uid: run.metadata.uid ?? '',
});

/** Loads a run's already frozen configuration, checking its digest. */
export async function loadConfiguration(deps: FreezeDeps, uri: string, digest: string): Promise<PipelineConfiguration> {
  const cached = deps.configurations.get(digest);
  if (cached) return cached;
  const configuration = parseConfiguration(await deps.store.readAll(uri, CONFIGURATION_MAX_BYTES), digest, uri);
  deps.configurations.set(digest, configuration);
  return configuration;
}

export async function freezeRun(deps: FreezeDeps, run: PipelineRun): Promise<FreezeOutcome> {
  // NOTE: once recorded in status, the configuration is the run's truth; the Pipeline is never read again.
  const recorded = run.status?.configuration;
  if (recorded) {
    try {
      const uri = uriInNamespace(deps.store, recorded.uri, run.metadata.namespace ?? '', 'status.configuration.uri');
      const configuration = await loadConfiguration(deps, uri, recorded.digest);
      return { kind: 'frozen', configuration, uri: recorded.uri, digest: recorded.digest, written: false };
    } catch (err) {
      if (err instanceof CrossNamespaceReferenceError) return { kind: 'failed', reason: Reasons.CrossNamespaceReference, message: err.message };
      if (err instanceof ConfigurationDigestError) return { kind: 'failed', reason: Reasons.ConfigurationTampered, message: err.message };
      if (err instanceof ObjectNotFoundError) return { kind: 'failed', reason: Reasons.ConfigurationMissing, message: err.message };
      if (err instanceof ObjectTooLargeError) return { kind: 'failed', reason: Reasons.ConfigurationTampered, message: err.message };
      throw err;
    }
  }
  const podMetadata = podMetadataProblem(run.spec.podMetadata);
  if (podMetadata) return { kind: 'failed', reason: Reasons.InvalidPodMetadata, message: `spec.podMetadata: ${podMetadata}` };
  const built = run.spec.reproduceFrom || run.spec.resumeFrom ? await reproduce(deps, run) : await freezeFromPipeline(deps, run);
  if (built.kind !== 'built') return built;
  return writeOnce(deps, run, built.configuration);
}

type Built = { kind: 'built'; configuration: PipelineConfiguration } | Exclude<FreezeOutcome, { kind: 'frozen' }>;

/** The pure part of starting from a Pipeline: it exists, is valid, and the run's parameters fit it. */
export function checkPipeline(run: PipelineRun, pipeline: Pipeline | undefined):
  | { kind: 'ok'; pipeline: Pipeline; parameters: ResolvedParameter[] }
  | Exclude<FreezeOutcome, { kind: 'frozen' }> {
  const namespace = run.metadata.namespace ?? '';
  const name = run.spec.pipelineRef?.name ?? '';
  if (!pipeline) return { kind: 'waiting', reason: Reasons.PipelineNotFound, message: `pipeline "${name}" not found in namespace "${namespace}"` };
  const problem = validatePipeline(pipeline.spec);
  if (problem) return { kind: 'failed', reason: Reasons.InvalidPipeline, message: `pipeline "${name}" is invalid: ${problem.message}` };
  const resolution = resolveParameters(pipeline.spec.parameters ?? [], run.spec.parameters ?? []);
  if ('error' in resolution) return { kind: 'failed', reason: Reasons.InvalidParameters, message: resolution.error };
  return { kind: 'ok', pipeline, parameters: resolution.parameters };
}

async function freezeFromPipeline(deps: FreezeDeps, run: PipelineRun): Promise<Built> {
  const namespace = run.metadata.namespace ?? '';
  let pipelineName = run.spec.pipelineRef?.name ?? '';
  // A run with modelRef runs the inference Pipeline bound to that exact model version.
  const boundModels = new Map<string, ModelVersion>();
  if (run.spec.modelRef) {
    const resolved = resolveModelReference(run.spec.modelRef, deps.modelVersionsOf(namespace, run.spec.modelRef.name));
    if ('error' in resolved) return { kind: 'failed', reason: Reasons.ModelNotFound, message: resolved.error };
    const bound = resolved.version.spec.inference;
    if (!bound) {
      return { kind: 'failed', reason: Reasons.ModelNotBound, message: `${resolved.version.metadata.name} names no inference pipeline (its training Pipeline has no spec.inference)` };
    }
    boundModels.set(run.spec.modelRef.name, resolved.version);
    pipelineName = bound.pipeline;
  }
  const checked = checkPipeline({ ...run, spec: { ...run.spec, pipelineRef: { name: pipelineName } } }, deps.pipelineOf(namespace, pipelineName));
  if (checked.kind !== 'ok') return checked;
  const { pipeline, parameters } = checked;
  const placement = placementProblem([...pipeline.spec.steps, ...(pipeline.spec.finally ?? [])], deps.placement);
  if (placement) return { kind: 'failed', reason: Reasons.PlacementNotAllowed, message: placement };
  const external = resolveExternalInputs(deps, namespace, pipeline, boundModels);
  if ('error' in external) return { kind: 'failed', reason: external.reason, message: external.error };
  const requireDigest = pipeline.spec.imagePolicy === 'RequireDigest';
  // Finally steps are steps too: their images are pinned and their inputs resolved alike.
  const everyStep = [...pipeline.spec.steps, ...(pipeline.spec.finally ?? [])];
  const unpinned = requireDigest ? everyStep.find((s) => !s.image.includes('@sha256:')) : undefined;
  if (unpinned) {
    return { kind: 'failed', reason: Reasons.ImageNotPinned, message: `step "${unpinned.name}": image ${unpinned.image} has no digest and the pipeline's imagePolicy is RequireDigest` };
  }
  const credentials = await deps.credentialsFrom(namespace, (pipeline.spec.imagePullSecrets ?? []).map((s) => s.name));
  // NOTE: off the reconcile workers and bounded in time: a tenant's slow registry holds no
  // worker, and other namespaces' runs take their turns.
  const references = everyStep.map((s) => [s.name, s.image] as const);
  const answer = await deps.images.request({ key: `${namespace}/${run.metadata.name}`, namespace, references, credentials });
  if ('pending' in answer) return { kind: 'waiting', reason: Reasons.ResolvingImages, message: `resolving the images of ${references.length} steps` };
  const resolved = answer.done;
  const images = new Map<string, ResolvedImage>();
  for (const step of everyStep) {
    const result = resolved.get(step.name)!;
    if (result.error) {
      deps.onImageResolution?.('failed');
      const message = `step "${step.name}": ${result.error.message}`;
      if (result.error.transient) return { kind: 'waiting', reason: Reasons.ImageResolutionFailed, message, backoff: true };
      return { kind: 'failed', reason: Reasons.ImageResolutionFailed, message };
    }
    images.set(step.name, result.image);
    deps.onImageResolution?.(step.image.includes('@sha256:') ? 'pinned' : 'resolved');
  }
  const configuration = freezeConfiguration({
    run: identityOf(run),
    pipeline,
    parameters,
    images,
    externalInputs: external.inputs,
    operatorVersion: deps.operatorVersion,
  });
  return { kind: 'built', configuration };
}

/** Pins every model and other-pipeline input of a Pipeline's steps. */
function resolveExternalInputs(
  deps: FreezeDeps, namespace: string, pipeline: Pipeline, boundModels: Map<string, ModelVersion>,
): { inputs: ExternalInput[] } | { error: string; reason: string } {
  const inputs: ExternalInput[] = [];
  for (const step of [...pipeline.spec.steps, ...(pipeline.spec.finally ?? [])]) {
    for (const input of step.inputs ?? []) {
      const where = `step "${step.name}" input "${input.name}"`;
      if (input.model) {
        const bound = boundModels.get(input.model.name);
        const resolved = bound ? { version: bound } : resolveModelReference(input.model, deps.modelVersionsOf(namespace, input.model.name));
        if ('error' in resolved) return { reason: Reasons.ModelNotFound, error: `${where}: ${resolved.error}` };
        const v = resolved.version;
        const uri = ownUri(deps.store, v.spec.artifact.uri, namespace, `${where}: the artifact of ${v.metadata.name}`);
        if (typeof uri !== 'string') return uri;
        inputs.push({ step: step.name, input: input.name, uri, digest: v.spec.artifact.digest, model: { name: v.spec.modelName, version: v.spec.version } });
      } else if (input.fromPipeline) {
        const { name, step: producer, output, run: runName } = input.fromPipeline;
        const candidates = deps.runsOfPipeline(namespace, name)
          .filter((r) => r.status?.phase === 'Succeeded' && (!runName || r.metadata.name === runName))
          .sort((a, b) => (b.status?.finishedAt ?? '').localeCompare(a.status?.finishedAt ?? ''));
        const source = candidates[0];
        const published = source?.status?.steps?.find((s) => s.name === producer)?.outputs?.find((o) => o.name === output);
        if (!source || !published) {
          const which = runName ? `run "${runName}"` : 'a succeeded run';
          return { reason: Reasons.ArtifactNotFound, error: `${where}: ${which} of pipeline "${name}" with output "${output}" of step "${producer}" does not exist` };
        }
        const uri = ownUri(deps.store, published.uri, namespace, `${where}: output "${output}" of run "${source.metadata.name}"`);
        if (typeof uri !== 'string') return uri;
        inputs.push({ step: step.name, input: input.name, uri, digest: published.digest, pipelineOutput: { pipeline: name, run: source.metadata.name, step: producer, output } });
      }
    }
  }
  return { inputs };
}

/** A URI inside the namespace, or the failure that says it is not. */
function ownUri(store: ArtifactStore, uri: string, namespace: string, what: string): string | { reason: string; error: string } {
  try {
    return uriInNamespace(store, uri, namespace, what);
  } catch (err) {
    if (err instanceof CrossNamespaceReferenceError) return { reason: Reasons.CrossNamespaceReference, error: err.message };
    throw err;
  }
}

async function reproduce(deps: FreezeDeps, run: PipelineRun): Promise<Built> {
  const namespace = run.metadata.namespace ?? '';
  const from = run.spec.reproduceFrom ?? { run: run.spec.resumeFrom };
  let source: { uri: string; digest: string };
  if (from.run) {
    const earlier = deps.runOf(namespace, from.run);
    if (!earlier) return { kind: 'failed', reason: Reasons.ReproductionSourceNotFound, message: `run "${from.run}" to reproduce not found in namespace "${namespace}"` };
    if (!earlier.status?.configuration) {
      return { kind: 'waiting', reason: Reasons.ReproductionSourceNotFound, message: `run "${from.run}" has no frozen configuration yet`, backoff: true };
    }
    source = earlier.status.configuration;
  } else {
    source = from.configuration!;
  }
  try {
    const readable = uriInNamespace(deps.store, source.uri, namespace, 'the configuration to reproduce');
    const original = parseConfiguration(await deps.store.readAll(readable, CONFIGURATION_MAX_BYTES), source.digest, source.uri);
    const { uri, digest } = source;
    // NOTE: the admin's placement policy and the Pod rules are today's, whatever they were when the source ran.
    const placement = placementProblem([...original.spec.steps, ...(original.spec.finally ?? [])], deps.placement);
    if (placement) return { kind: 'failed', reason: Reasons.PlacementNotAllowed, message: placement };
    const pods = stepPodsProblem(original.spec);
    if (pods) return { kind: 'failed', reason: Reasons.InvalidPipeline, message: `the configuration to reproduce is invalid: ${pods.message}` };
    return { kind: 'built', configuration: reproduceConfiguration(original, { ...identityOf(run), reproducedFrom: { uri, digest } }) };
  } catch (err) {
    if (err instanceof CrossNamespaceReferenceError) return { kind: 'failed', reason: Reasons.CrossNamespaceReference, message: `refusing to reproduce: ${err.message}` };
    if (err instanceof ConfigurationDigestError) return { kind: 'failed', reason: Reasons.ConfigurationDigestMismatch, message: `refusing to reproduce: ${err.message}` };
    if (err instanceof ObjectNotFoundError) return { kind: 'failed', reason: Reasons.ReproductionSourceNotFound, message: err.message };
    if (err instanceof ObjectTooLargeError) return { kind: 'failed', reason: Reasons.ReproductionSourceTooLarge, message: `refusing to reproduce: ${err.message}, which no configuration Ferry writes exceeds` };
    throw err;
  }
}

async function writeOnce(deps: FreezeDeps, run: PipelineRun, configuration: PipelineConfiguration): Promise<FreezeOutcome> {
  const key = configurationKey(run.metadata.namespace ?? '', configuration.pipeline.name, run.metadata.name);
  const { bytes, digest } = serializeConfiguration(configuration);
  try {
    const stored = await deps.store.createOnce(key, bytes);
    deps.configurations.set(digest, configuration);
    return { kind: 'frozen', configuration, uri: stored.uri, digest, written: true };
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
  }
  // Written by an earlier pass whose status update was lost: adopt it if it is this run's.
  const uri = deps.store.uriFor(key);
  const existing = await deps.store.readAll(uri, CONFIGURATION_MAX_BYTES);
  const existingDigest = `sha256:${sha256Hex(existing)}`;
  const adopted = parseConfiguration(existing, existingDigest, uri);
  if (adopted.run.uid !== run.metadata.uid) {
    return { kind: 'failed', reason: Reasons.ConfigurationConflict, message: `${uri} belongs to an earlier run named "${run.metadata.name}" (uid ${adopted.run.uid}); use another run name` };
  }
  deps.configurations.set(existingDigest, adopted);
  return { kind: 'frozen', configuration: adopted, uri, digest: existingDigest, written: false };
}

