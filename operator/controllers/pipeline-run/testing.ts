// Builders for the unit tests of the pipeline-run planning code: small Pipelines, PipelineRuns
// and step Pods carrying only what a test cares about, and a fixed "now". Test-only; no I/O.
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import { API_VERSION, type ObjectMeta } from '../../api/v1alpha1/common.ts';
import { LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_RUN, LABEL_STEP, MANAGED_BY } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun, PipelineRunSpec, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline, PipelineSpec, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { freezeConfiguration, type ExternalInput } from '../../configuration/pipeline-configuration.ts';
import { stepPodName } from '../../kube/names.ts';
import { checkPipeline } from './freeze.ts';
import type { RunStart } from './plan.ts';
import type { Pod } from '../../kube/pod.ts';

export const NAMESPACE = 'ml';
export const RUN_NAME = 'r1';
export const RUN_UID = '6f1c1a52-0000-4000-8000-000000000001';
export const PIPELINE_NAME = 'train';
export const IMAGE = 'registry.local/ferry/step:1.0';

/** The fixed "now" of every planning test. */
export const NOW = new Date('2030-01-01T12:00:00.000Z');

/** NOW moved by `seconds` (negative: earlier). */
export const at = (seconds: number, from: Date = NOW): Date => new Date(from.getTime() + seconds * 1000);

/** A Kubernetes timestamp (second precision) `seconds` from NOW. */
export const stamp = (seconds: number): string => at(seconds).toISOString().replace(/\.\d{3}Z$/, 'Z');

export function step(name: string, extra: Partial<StepSpec> = {}): StepSpec {
  return { name, image: IMAGE, command: ['run', name], ...extra };
}

/** a → b, a → c, (b, c) → d */
export const diamond = (extra: Partial<StepSpec> = {}): StepSpec[] => [
  step('a', extra),
  step('b', { ...extra, dependsOn: ['a'] }),
  step('c', { ...extra, dependsOn: ['a'] }),
  step('d', { ...extra, dependsOn: ['b', 'c'] }),
];

export function pipeline(steps: StepSpec[], extra: Partial<PipelineSpec> = {}): Pipeline {
  return {
    apiVersion: API_VERSION,
    kind: 'Pipeline',
    metadata: { name: PIPELINE_NAME, namespace: NAMESPACE, generation: 1 },
    spec: { ...extra, steps },
  };
}

export function pipelineRun(extra: Partial<PipelineRunSpec> = {}, status?: PipelineRunStatus, name = RUN_NAME): PipelineRun {
  return {
    apiVersion: API_VERSION,
    kind: 'PipelineRun',
    metadata: { name, namespace: NAMESPACE, uid: RUN_UID, generation: 1 },
    spec: { pipelineRef: { name: PIPELINE_NAME }, ...extra },
    ...(status ? { status } : {}),
  };
}

/** The same run with another status (what the next reconcile reads after a status write). */
export const withStatus = (run: PipelineRun, status: PipelineRunStatus): PipelineRun => ({ ...run, status: structuredClone(status) });

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

export interface PodExtra {
  status?: Partial<IPodStatus>;
  metadata?: Partial<ObjectMeta>;
}

/** A step Pod as the cache would hold it: labelled with its step and attempt, owned by the run. */
export function pod(name: string, stepName: string, attempt: number, phase: PodPhase, extra: PodExtra = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: NAMESPACE,
      uid: `pod-uid-${name}`,
      creationTimestamp: stamp(-60),
      labels: {
        [LABEL_MANAGED_BY]: MANAGED_BY,
        [LABEL_RUN]: RUN_NAME,
        [LABEL_STEP]: stepName,
        [LABEL_ATTEMPT]: String(attempt),
      },
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'PipelineRun', name: RUN_NAME, uid: RUN_UID, controller: true }],
      ...extra.metadata,
    },
    spec: { containers: [{ name: 'step', image: IMAGE }] },
    status: { phase, ...(phase === 'Pending' ? {} : { startTime: stamp(-60) }), ...extra.status },
  };
}

/** The Pod of `stepName`'s attempt in the default run, named as the operator names it. */
export const stepPod = (stepName: string, attempt: number, phase: PodPhase, extra: PodExtra = {}): Pod =>
  pod(stepPodName(RUN_NAME, stepName, attempt), stepName, attempt, phase, extra);

/** A terminated step container. */
export function terminated(exitCode: number, extra: { message?: string; reason?: string; finishedAt?: string; name?: string } = {}): IContainerStatus {
  return {
    name: extra.name ?? 'step',
    image: IMAGE,
    imageID: '',
    ready: false,
    restartCount: 0,
    state: {
      terminated: {
        exitCode,
        ...(extra.reason ? { reason: extra.reason } : {}),
        ...(extra.message ? { message: extra.message } : {}),
        finishedAt: extra.finishedAt ?? stamp(-1),
      },
    },
  };
}

/** A step Pod that failed with `exitCode` and a termination message. */
export const failedPod = (stepName: string, attempt: number, exitCode = 1, message = 'boom'): Pod =>
  stepPod(stepName, attempt, 'Failed', { status: { containerStatuses: [terminated(exitCode, { message })] } });

/** A step Pod that succeeded. */
export const succeededPod = (stepName: string, attempt: number): Pod =>
  stepPod(stepName, attempt, 'Succeeded', { status: { containerStatuses: [terminated(0)] } });

export const CONFIGURATION_URI = `file:///store/${NAMESPACE}/${PIPELINE_NAME}/${RUN_NAME}/pipeline-configuration.json`;
export const CONFIGURATION_DIGEST = `sha256:${'c'.repeat(64)}`;

/** What freezing would give for this Pipeline (images "pinned" to themselves, no registry). */
export function startFor(p: Pipeline | undefined, run: PipelineRun): RunStart {
  const checked = checkPipeline(run, p);
  if (checked.kind !== 'ok') return checked;
  const images = new Map(checked.pipeline.spec.steps.map((s) => [s.name, { reference: s.image, pinned: s.image, digest: `sha256:${'d'.repeat(64)}` as const }]));
  const configuration = freezeConfiguration({
    run: { namespace: NAMESPACE, name: run.metadata.name, uid: run.metadata.uid ?? '' },
    pipeline: checked.pipeline,
    parameters: checked.parameters,
    images,
    operatorVersion: '0.0.0-test',
  });
  return { kind: 'frozen', configuration, uri: CONFIGURATION_URI, digest: CONFIGURATION_DIGEST };
}

/** A frozen start whose configuration also pins these external inputs (registered models, other pipelines' outputs). */
export function withExternalInputs(start: RunStart, externalInputs: ExternalInput[]): RunStart {
  if (start.kind !== 'frozen') return start;
  return { ...start, configuration: { ...start.configuration, externalInputs } };
}
