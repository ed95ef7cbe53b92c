// Builders for test objects (steps, Pipelines, PipelineRuns), shared by the unit tests under
// operator/ and the integration tests and bench under test/ and bench/: each test names only
// what matters to it. Planning fixtures build on these (operator/controllers/pipeline-run/testing.ts).
import type { Resource } from '../operator/kube/resources.ts';
import { API_VERSION } from '../operator/api/v1alpha1/common.ts';
import type { PipelineRun, PipelineRunSpec, PipelineRunStatus } from '../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline, PipelineSpec, StepSpec } from '../operator/api/v1alpha1/pipeline.ts';

/** Pinned by digest, so no registry is asked (tests that resolve tags run their own registry). */
export const TEST_IMAGE = `registry.local/ferry/test-step@sha256:${'0'.repeat(64)}`;

export const NAMESPACE = 'ml';
export const PIPELINE_NAME = 'train';
export const RUN_NAME = 'r1';
/** The uid unit tests see on the default run. NOTE: the API server replaces uid and generation on create. */
export const RUN_UID = '6f1c1a52-0000-4000-8000-000000000001';

export function step(name: string, extra: Partial<StepSpec> = {}): StepSpec {
  return { name, image: TEST_IMAGE, command: ['run', name], ...extra };
}

/** a → b, a → c, (b, c) → d */
export const diamond = (extra: Partial<StepSpec> = {}): StepSpec[] => [
  step('a', extra),
  step('b', { ...extra, dependsOn: ['a'] }),
  step('c', { ...extra, dependsOn: ['a'] }),
  step('d', { ...extra, dependsOn: ['b', 'c'] }),
];

export interface PipelineOptions extends Partial<PipelineSpec> {
  steps: StepSpec[];
  /** Default PIPELINE_NAME. */
  name?: string;
  /** Default NAMESPACE. */
  namespace?: string;
}

/** A Pipeline: the spec is every option but name and namespace. */
export function pipeline({ name = PIPELINE_NAME, namespace = NAMESPACE, ...spec }: PipelineOptions): Pipeline {
  return { apiVersion: API_VERSION, kind: 'Pipeline', metadata: { name, namespace, generation: 1 }, spec };
}

export interface PipelineRunOptions extends Partial<PipelineRunSpec> {
  /** Default RUN_NAME. */
  name?: string;
  /** Default NAMESPACE. */
  namespace?: string;
  /** Default RUN_UID. */
  uid?: string;
  /**
   * The Pipeline named by spec.pipelineRef; default PIPELINE_NAME. A run that starts from
   * elsewhere (reproduceFrom, resumeFrom, modelRef) has no pipelineRef: the CRD allows one of the four.
   */
  pipeline?: string;
  /** The status a previous reconcile wrote; none by default. */
  status?: PipelineRunStatus;
}

/** A PipelineRun of a Pipeline: the spec is every option but the metadata, `pipeline` and `status`. */
export function pipelineRun(options: PipelineRunOptions = {}): PipelineRun {
  const { name = RUN_NAME, namespace = NAMESPACE, uid = RUN_UID, pipeline: pipelineName = PIPELINE_NAME, status, ...spec } = options;
  return {
    apiVersion: API_VERSION,
    kind: 'PipelineRun',
    metadata: { name, namespace, uid, generation: 1 },
    spec: { ...(spec.reproduceFrom || spec.resumeFrom || spec.modelRef ? {} : { pipelineRef: { name: pipelineName } }), ...spec },
    ...(status ? { status } : {}),
  };
}

/** ConfigMaps: the plainest object there is, for tests of the client and the harness themselves. */
export const CONFIG_MAPS: Resource = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };

export interface ConfigMap {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  data?: Record<string, string>;
}

export const configMap = (name: string, namespace: string, data: Record<string, string> = { k: 'v' }): ConfigMap =>
  ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data });
