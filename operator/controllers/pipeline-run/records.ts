// What a run means for the metadata store (pure): the run, one execution per step, the
// artifacts it consumed and produced, and lineage edges between them, derived from its status
// and frozen configuration. Derived, not accumulated: replaying gives the same records.
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { digestOf } from '../../configuration/canonical-json.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { ArtifactRecord, LineageEdge, RunRecords } from '../../metadata/records.ts';
import { cacheKeyOf } from './cache-key.ts';

/** The cache key components of every step that has a key, recomputed from the configuration. */
function cacheComponentsOf(status: PipelineRunStatus, configuration: PipelineConfiguration): Map<string, Record<string, string>> {
  const steps = new Map((status.steps ?? []).map((s) => [s.name, s]));
  const parameters = new Map(configuration.parameters.map((p) => [p.name, p.value]));
  const components = new Map<string, Record<string, string>>();
  for (const spec of configuration.spec.steps) {
    if (!steps.get(spec.name)?.cacheKey) continue;
    const inputs = (spec.inputs ?? []).map((input) => {
      const source = input.from
        ? steps.get(input.from.step)?.outputs?.find((o) => o.name === input.from!.output)
        : configuration.externalInputs.find((e) => e.step === spec.name && e.input === input.name);
      return { name: input.name, uri: source?.uri ?? '', digest: source?.digest ?? '' };
    });
    components.set(spec.name, cacheKeyOf(spec, parameters, inputs).components);
  }
  return components;
}

export function recordsOf(run: PipelineRun, status: PipelineRunStatus, configuration: PipelineConfiguration): RunRecords {
  const namespace = run.metadata.namespace ?? '';
  const runUid = run.metadata.uid ?? '';
  const steps = new Map((status.steps ?? []).map((s) => [s.name, s]));
  const components = cacheComponentsOf(status, configuration);
  const artifacts = new Map<string, ArtifactRecord>();
  const edges: LineageEdge[] = [];
  const specs = [...configuration.spec.steps, ...(configuration.spec.finally ?? [])];
  // A forEach step's outputs are its collection: one artifact that lists every item's.
  const sourceOf = (producer: string, output: string) => {
    const step = steps.get(producer);
    return step?.collection ?? step?.outputs?.find((o) => o.name === output);
  };
  for (const spec of specs) {
    const step = steps.get(spec.name);
    if (!step || (step.phase !== 'Succeeded' && step.phase !== 'Cached')) continue;
    if (step.collection) {
      const { uri, digest, size } = step.collection;
      artifacts.set(uri, { namespace, uri, digest, type: 'collection', size });
      edges.push({ runUid, step: spec.name, direction: 'produced', name: 'items', artifactUri: uri, artifactDigest: digest });
    }
    for (const output of step.outputs ?? []) {
      const type = spec.outputs?.find((o) => o.name === output.name)?.type ?? 'file';
      artifacts.set(output.uri, { namespace, uri: output.uri, digest: output.digest, type, ...(output.size !== undefined ? { size: output.size } : {}) });
      edges.push({ runUid, step: spec.name, direction: 'produced', name: output.name, artifactUri: output.uri, artifactDigest: output.digest });
    }
    for (const input of spec.inputs ?? []) {
      const source = input.from
        ? sourceOf(input.from.step, input.from.output)
        : configuration.externalInputs.find((e) => e.step === spec.name && e.input === input.name);
      if (!source) continue;
      if (!artifacts.has(source.uri)) {
        const type = input.model ? 'model' : input.from ? specs.find((s) => s.name === input.from!.step)?.outputs?.find((o) => o.name === input.from!.output)?.type ?? 'file' : 'dataset';
        artifacts.set(source.uri, { namespace, uri: source.uri, digest: source.digest, type });
      }
      edges.push({ runUid, step: spec.name, direction: 'consumed', name: input.name, artifactUri: source.uri, artifactDigest: source.digest });
    }
  }
  return {
    run: {
      uid: runUid,
      namespace,
      name: run.metadata.name,
      pipeline: configuration.pipeline.name,
      pipelineSpecHash: configuration.pipeline.specHash,
      configurationUri: status.configuration?.uri ?? '',
      configurationDigest: status.configuration?.digest ?? '',
      phase: status.phase ?? 'Pending',
      ...(status.startedAt ? { startedAt: status.startedAt } : {}),
      ...(status.finishedAt ? { finishedAt: status.finishedAt } : {}),
      ...(configuration.run.reproducedFrom ? { reproducedFrom: configuration.run.reproducedFrom.uri } : {}),
    },
    executions: (status.steps ?? []).map((s) => ({
      runUid,
      step: s.name,
      phase: s.phase,
      attempts: s.attempts ?? 0,
      ...(s.podName ? { podName: s.podName } : {}),
      ...(s.cacheKey ? { cacheKey: s.cacheKey } : {}),
      ...(components.has(s.name) ? { cacheComponents: components.get(s.name)! } : {}),
      ...(s.cachedFrom ? { cachedFrom: s.cachedFrom } : {}),
      ...(s.startedAt ? { startedAt: s.startedAt } : {}),
      ...(s.finishedAt ? { finishedAt: s.finishedAt } : {}),
      ...(s.metrics ? { metrics: s.metrics } : {}),
      ...(s.results ? { results: s.results } : {}),
      ...(s.collection ? { collection: { uri: s.collection.uri, digest: s.collection.digest } } : {}),
      ...(s.items ? { items: { total: s.items.total, succeeded: s.items.succeeded, failed: s.items.failed } } : {}),
    })),
    artifacts: [...artifacts.values()],
    edges,
  };
}

/** `<phase>:<digest>`: what status.metadataRecorded holds once these records are stored. */
export const recordsDigest = (records: RunRecords): string => `${records.run.phase}:${digestOf(records)}`;

/** Whether the metadata store holds the run in the final phase its status shows. */
export const recordedAsFinished = (status: PipelineRunStatus): boolean => (status.metadataRecorded ?? '').startsWith(`${status.phase}:`);
