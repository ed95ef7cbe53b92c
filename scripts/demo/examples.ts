// The iris example (manifests/examples/iris/) as the demo and the end-to-end tests use it: the
// Pipelines applied as they are written, except that image references name the registry the
// cluster pulls from; the PipelineRuns used as templates, each created under a fresh name so
// that every demo run starts new runs (identical ones are then served from the step cache).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { KubeClient } from '../../operator/kube/client.ts';
import { PIPELINE_RUNS } from '../../operator/kube/resources.ts';
import { kubectlOk, type Target } from './install.ts';

export const exampleDir = join(import.meta.dirname, '..', '..', 'manifests', 'examples', 'iris');
/** The registry the example's manifests name: the local cluster's. */
export const exampleRegistry = '10.244.0.1:5000';

export interface Example {
  pipelines: Pipeline[];
  /** Templates: PipelineRuns of the training pipeline first, in file order, then the rest. */
  trainingRuns: PipelineRun[];
  inferenceRuns: PipelineRun[];
}

export async function loadExample(registry: string): Promise<Example> {
  const files = (await readdir(exampleDir)).filter((f) => f.endsWith('.yaml')).sort();
  const documents: Array<Pipeline | PipelineRun> = [];
  for (const file of files) {
    const text = (await readFile(join(exampleDir, file), 'utf8')).replaceAll(`${exampleRegistry}/`, `${registry}/`);
    documents.push(...(loadAll(text) as Array<Pipeline | PipelineRun>).filter((d) => d !== null && d !== undefined));
  }
  const pipelines = documents.filter((d): d is Pipeline => d.kind === 'Pipeline');
  const runs = documents.filter((d): d is PipelineRun => d.kind === 'PipelineRun');
  const registers = (p: Pipeline): boolean => p.spec.steps.some((s) => s.outputs?.some((o) => o.register !== undefined));
  const training = new Set(pipelines.filter(registers).map((p) => p.metadata.name));
  return {
    pipelines,
    trainingRuns: runs.filter((r) => training.has(r.spec.pipelineRef?.name ?? '')),
    inferenceRuns: runs.filter((r) => !training.has(r.spec.pipelineRef?.name ?? '')),
  };
}

export async function applyPipelines(target: Target, namespace: string, pipelines: Pipeline[]): Promise<void> {
  for (const pipeline of pipelines) {
    const object = { ...pipeline, metadata: { ...pipeline.metadata, namespace } };
    await kubectlOk(target, ['apply', '--server-side', '--field-manager=ferry-demo', '-f', '-'], JSON.stringify(object));
  }
}

/** Creates a run from a template under a generated name (`<template name>-<suffix>`); returns its name. */
export async function startRun(client: KubeClient, namespace: string, template: PipelineRun): Promise<string> {
  const { name, generateName, labels, annotations } = template.metadata;
  const created = await client.create<PipelineRun>(PIPELINE_RUNS, namespace, {
    apiVersion: template.apiVersion,
    kind: 'PipelineRun',
    // An empty name is no name to the API server: generateName applies.
    metadata: { name: '', generateName: generateName ?? `${name}-`, namespace, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    spec: template.spec,
  });
  return created.metadata.name;
}
