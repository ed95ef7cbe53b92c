// The secondary indexes of the informer caches, by name: what each cache can be looked up by.
// One index per key space (no string prefixes mixing them); values are `namespace/<thing>`, so
// a lookup never crosses a namespace.
import { API_VERSION } from '../api/v1alpha1/common.ts';
import { LABEL_RUN_UID } from '../api/v1alpha1/labels.ts';
import type { ModelVersion } from '../api/v1alpha1/model-version.ts';
import type { Pipeline } from '../api/v1alpha1/pipeline.ts';
import type { PipelineRun } from '../api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../kube/pod.ts';
import type { Cache } from '../runtime/cache.ts';

/** `namespace/value`: every index value is scoped to a namespace. */
export const inNamespace = (namespace: string | undefined, value: string): string => `${namespace ?? ''}/${value}`;

/** The run that controls a Pod, as a cache key (`namespace/name`). */
export function runKeyOfPod(pod: Pod): string | undefined {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'PipelineRun' && o.apiVersion === API_VERSION);
  return owner ? inNamespace(pod.metadata.namespace, owner.name) : undefined;
}

export const pipelineIndexes = {
  /** The registered model the Pipeline's endpoint serves (by its spec, and by its status while the spec changes). */
  servedModel: (pipeline: Pipeline): string[] =>
    [...new Set([pipeline.spec.serving?.model.name, pipeline.status?.serving?.model].filter((m): m is string => m !== undefined))]
      .map((m) => inNamespace(pipeline.metadata.namespace, m)),
};

export const runIndexes = {
  /** The Pipeline a run starts from (none for a reproduction or a modelRef run). */
  pipeline: (run: PipelineRun): string[] => (run.spec.pipelineRef ? [inNamespace(run.metadata.namespace, run.spec.pipelineRef.name)] : []),
  /** The cache keys of the run's steps that ran (or run) with one: where the step cache looks for earlier results. */
  cacheKey: (run: PipelineRun): string[] =>
    (run.status?.steps ?? [])
      .filter((s) => s.cacheKey && (s.phase === 'Succeeded' || s.phase === 'Cached' || s.phase === 'Running'))
      .map((s) => inNamespace(run.metadata.namespace, s.cacheKey!)),
  /** The models the run registered versions of (their numbers are taken). */
  model: (run: PipelineRun): string[] =>
    [...new Set((run.status?.steps ?? []).flatMap((s) => (s.models ?? []).map((m) => inNamespace(run.metadata.namespace, m.name))))],
};

export const podIndexes = {
  /** The run that controls the Pod. */
  run: (pod: Pod): string[] => [runKeyOfPod(pod) ?? ''].filter(Boolean),
};

export const modelVersionIndexes = {
  /** The registered model a version belongs to. */
  model: (version: ModelVersion): string[] => [inNamespace(version.metadata.namespace, version.spec.modelName)],
  /** The run that registered it (its uid label): how a run finds the versions it already created. */
  runUid: (version: ModelVersion): string[] => {
    const uid = version.metadata.labels?.[LABEL_RUN_UID];
    return uid ? [inNamespace(version.metadata.namespace, uid)] : [];
  },
};

export type PipelineCache = Cache<Pipeline, keyof typeof pipelineIndexes>;
export type RunCache = Cache<PipelineRun, keyof typeof runIndexes>;
export type PodCache = Cache<Pod, keyof typeof podIndexes>;
export type ModelVersionCache = Cache<ModelVersion, keyof typeof modelVersionIndexes>;
