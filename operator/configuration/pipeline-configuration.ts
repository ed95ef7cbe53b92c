// The frozen PipelineConfiguration: everything a run depends on, resolved once before its first
// step (Pipeline spec with images pinned by digest, parameters with their source, provenance,
// operator version), serialised canonically and hashed. Pure: freezing and reproducing build
// documents; configuration-store.ts writes and reads them.
import type { ResolvedParameter } from '../api/v1alpha1/pipeline-run.ts';
import type { ParameterType, Pipeline, PipelineSpec, StepSpec } from '../api/v1alpha1/pipeline.ts';
import type { ResolvedImage } from '../images/resolver.ts';
import { canonicalJson, digestOf, sha256Hex } from './canonical-json.ts';

export const CONFIGURATION_FILE = 'pipeline-configuration.json';
/**
 * The largest configuration Ferry reads (docs/limits.md). A Pipeline is at most ~1.5 MiB (etcd's
 * object limit), and pinning adds little, so anything larger was not written by Ferry.
 */
export const CONFIGURATION_MAX_BYTES = 4 * 1024 * 1024;

export interface RunIdentity {
  namespace: string;
  name: string;
  uid: string;
  /** Set on a reproduction: the configuration it was copied from. */
  reproducedFrom?: { uri: string; digest: string };
}

export interface FrozenParameter {
  name: string;
  type: ParameterType;
  value: string;
  source: ResolvedParameter['source'];
}

/** A step input taken from outside the run (a registered model, another pipeline's output), pinned. */
export interface ExternalInput {
  step: string;
  input: string;
  uri: string;
  digest: string;
  model?: { name: string; version: number };
  pipelineOutput?: { pipeline: string; run: string; step: string; output: string };
}

export interface PipelineConfiguration {
  apiVersion: 'ferry.dev/v1alpha1';
  kind: 'PipelineConfiguration';
  /** The only part that differs between a run and its reproductions. */
  run: RunIdentity;
  pipeline: {
    name: string;
    generation: number;
    /** sha256 of the Pipeline's spec as applied (before pinning). */
    specHash: string;
    /** Where the Pipeline came from, as GitOps tools and users annotate it. */
    provenance: Record<string, string>;
  };
  /** The spec the run executes: every step image pinned by digest. */
  spec: PipelineSpec;
  parameters: FrozenParameter[];
  images: Array<{ step: string; reference: string; pinned: string; digest: string }>;
  /** Inputs resolved from registered models and other pipelines' runs. */
  externalInputs: ExternalInput[];
  operator: { version: string };
}

/** Annotations and labels that say where a Pipeline came from (git repository, revision, GitOps app). */
const PROVENANCE_KEYS = [/^ferry\.dev\/source-/, /^argocd\.argoproj\.io\//, /^kustomize\.toolkit\.fluxcd\.io\//, /^helm\.toolkit\.fluxcd\.io\//, /^meta\.helm\.sh\//, /^app\.kubernetes\.io\/(instance|version)$/];

export function provenanceOf(pipeline: Pipeline): Record<string, string> {
  const all = { ...pipeline.metadata.labels, ...pipeline.metadata.annotations };
  return Object.fromEntries(Object.entries(all).filter(([key]) => PROVENANCE_KEYS.some((re) => re.test(key))).sort());
}

export interface FreezeInput {
  run: RunIdentity;
  pipeline: Pipeline;
  parameters: ResolvedParameter[];
  /** Resolved image of each step, by step name. */
  images: Map<string, ResolvedImage>;
  externalInputs?: ExternalInput[];
  operatorVersion: string;
}

export function freezeConfiguration(input: FreezeInput): PipelineConfiguration {
  const { pipeline } = input;
  const types = new Map((pipeline.spec.parameters ?? []).map((p) => [p.name, p.type ?? 'string']));
  const pin = (step: string) => {
    const image = input.images.get(step);
    if (!image) throw new Error(`no resolved image for step "${step}"`);
    return image;
  };
  const pinned = (s: StepSpec): StepSpec => ({ ...structuredClone(s), image: pin(s.name).pinned });
  return {
    apiVersion: 'ferry.dev/v1alpha1',
    kind: 'PipelineConfiguration',
    run: input.run,
    pipeline: {
      name: pipeline.metadata.name,
      generation: pipeline.metadata.generation ?? 0,
      specHash: digestOf(pipeline.spec),
      provenance: provenanceOf(pipeline),
    },
    spec: {
      ...structuredClone(pipeline.spec),
      steps: pipeline.spec.steps.map(pinned),
      ...(pipeline.spec.finally ? { finally: pipeline.spec.finally.map(pinned) } : {}),
    },
    parameters: input.parameters.map((p) => ({ name: p.name, type: types.get(p.name) ?? 'string', value: p.value, source: p.source })),
    images: [...pipeline.spec.steps, ...(pipeline.spec.finally ?? [])].map((s) => ({ step: s.name, reference: s.image, pinned: pin(s.name).pinned, digest: pin(s.name).digest })),
    externalInputs: input.externalInputs ?? [],
    operator: { version: input.operatorVersion },
  };
}

/** A new run's configuration copied from an earlier one: identical except for run identity. */
export function reproduceConfiguration(source: PipelineConfiguration, run: RunIdentity): PipelineConfiguration {
  return { ...structuredClone(source), run };
}

/** Canonical bytes and their digest: what is written to the store and recorded in status. */
export function serializeConfiguration(configuration: PipelineConfiguration): { bytes: Buffer; digest: string } {
  const bytes = Buffer.from(canonicalJson(configuration) + '\n');
  return { bytes, digest: `sha256:${sha256Hex(bytes)}` };
}

export function parseConfiguration(bytes: Buffer, expectedDigest: string, uri: string): PipelineConfiguration {
  const digest = `sha256:${sha256Hex(bytes)}`;
  if (digest !== expectedDigest) throw new ConfigurationDigestError(uri, expectedDigest);
  return JSON.parse(bytes.toString('utf8')) as PipelineConfiguration;
}

export class ConfigurationDigestError extends Error {
  // NOTE: the actual digest is not named: it would tell what the object holds to anyone who can guess its URI.
  constructor(uri: string, expected: string) {
    super(`configuration ${uri} does not have the expected digest ${expected}`);
    this.name = 'ConfigurationDigestError';
  }
}

/** Where a run's configuration lives in the store. */
export const configurationKey = (namespace: string, pipeline: string, run: string) => `${namespace}/${pipeline}/${run}/${CONFIGURATION_FILE}`;
