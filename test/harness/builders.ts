// Builders for test objects, so that tests show only what matters to them.
import type { PipelineRun, PipelineRunSpec } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pipeline, PipelineSpec, StepSpec } from '../../operator/api/v1alpha1/pipeline.ts';

/** Pinned by digest, so no registry is asked (tests that resolve tags run their own registry). */
export const TEST_IMAGE = `registry.local/ferry/test-step@sha256:${'0'.repeat(64)}`;

export function step(name: string, extra: Partial<StepSpec> = {}): StepSpec {
  return { name, image: TEST_IMAGE, command: ['run', name], ...extra };
}

export function pipeline(name: string, namespace: string, spec: Partial<PipelineSpec> & { steps: StepSpec[] }): Pipeline {
  return { apiVersion: 'ferry.dev/v1alpha1', kind: 'Pipeline', metadata: { name, namespace }, spec };
}

export function pipelineRun(name: string, namespace: string, pipelineName: string, extra: Partial<PipelineRunSpec> = {}): PipelineRun {
  return { apiVersion: 'ferry.dev/v1alpha1', kind: 'PipelineRun', metadata: { name, namespace }, spec: { pipelineRef: { name: pipelineName }, ...extra } };
}

/** a → b, a → c, (b, c) → d */
export const diamondSteps = (extra: Partial<StepSpec> = {}): StepSpec[] => [
  step('a', extra),
  step('b', { ...extra, dependsOn: ['a'] }),
  step('c', { ...extra, dependsOn: ['a'] }),
  step('d', { ...extra, dependsOn: ['b', 'c'] }),
];
