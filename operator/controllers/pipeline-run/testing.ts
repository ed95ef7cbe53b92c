// Fixtures for the unit tests of the pipeline-run planning code, built on the shared builders
// (test/builders.ts): a fixed "now", step Pods as the cache holds them, what freezing would give,
// and helpers that plan and read a plan the way a person reads a status. Test-only; no I/O.
import assert from 'node:assert/strict';
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import { API_VERSION, type Condition, type ObjectMeta } from '../../api/v1alpha1/common.ts';
import { CONDITION_SUCCEEDED, findCondition } from '../../api/v1alpha1/conditions.ts';
import { LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_RUN, LABEL_STEP, MANAGED_BY } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun, PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import { freezeConfiguration, type ExternalInput } from '../../configuration/pipeline-configuration.ts';
import { stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { NAMESPACE, PIPELINE_NAME, RUN_NAME, RUN_UID, TEST_IMAGE, pipelineRun } from '../../../test/builders.ts';
import { checkPipeline, type FreezeOutcome } from './freeze.ts';
import { planRun, type CacheView, type CheckedReport, type RunFacts, type RunPlan } from './plan.ts';
import { terminationMessageOf } from './pod-status.ts';
import type { Reused } from './transitions.ts';

/** The fixed "now" of every planning test. */
export const NOW = new Date('2030-01-01T12:00:00.000Z');

/** NOW moved by `seconds` (negative: earlier). */
export const at = (seconds: number, from: Date = NOW): Date => new Date(from.getTime() + seconds * 1000);

/** A Kubernetes timestamp (second precision) `seconds` from NOW. */
export const stamp = (seconds: number): string => at(seconds).toISOString().replace(/\.\d{3}Z$/, 'Z');

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
    spec: { containers: [{ name: 'step', image: TEST_IMAGE }] },
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
    image: TEST_IMAGE,
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

/** The step container running since `startedAt`: what the planner times a step from. */
export function runningStep(startedAt: string): IContainerStatus {
  return { name: 'step', image: TEST_IMAGE, imageID: '', ready: false, restartCount: 0, state: { running: { startedAt } } };
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
export function startFor(p: Pipeline | undefined, run: PipelineRun): FreezeOutcome {
  const checked = checkPipeline(run, p);
  if (checked.kind !== 'ok') return checked;
  const images = new Map([...checked.pipeline.spec.steps, ...(checked.pipeline.spec.finally ?? [])].map((s) => [s.name, { reference: s.image, pinned: s.image, digest: `sha256:${'d'.repeat(64)}` as const }]));
  const configuration = freezeConfiguration({
    run: { namespace: NAMESPACE, name: run.metadata.name, uid: run.metadata.uid ?? '' },
    pipeline: checked.pipeline,
    parameters: checked.parameters,
    images,
    operatorVersion: '0.0.0-test',
  });
  return { kind: 'frozen', configuration, uri: CONFIGURATION_URI, digest: CONFIGURATION_DIGEST, written: false };
}

/** A frozen start whose configuration also pins these external inputs (registered models, other pipelines' outputs). */
export function withExternalInputs(start: FreezeOutcome, externalInputs: ExternalInput[]): FreezeOutcome {
  if (start.kind !== 'frozen') return start;
  return { ...start, configuration: { ...start.configuration, externalInputs } };
}

/** A cache hit as a test names it: `origin` defaults to the run and step it came from. */
export type ReusedLike = Omit<Reused, 'origin'> & { origin?: string };

/** The whole facts of a pass over `run` at NOW, with nothing in them unless given. */
export function factsFor(facts: Partial<RunFacts> & Pick<RunFacts, 'run' | 'start'>): RunFacts {
  const { collections, blobUri, ...rest } = facts;
  return {
    pods: [], now: NOW, registered: [], reports: inlineReports(facts.pods ?? []), resumed: new Map(),
    collections: collections ?? new Map(), blobUri: blobUri ?? ((hex) => `file:///store/${NAMESPACE}/blobs/sha256/${hex}`), ...rest,
  };
}

/** The reports Pods carry in their termination messages, as gather.ts passes them on when they check out. */
function inlineReports(pods: Pod[]): Map<string, CheckedReport> {
  const reports = new Map<string, CheckedReport>();
  for (const pod of pods) {
    const message = terminationMessageOf(pod);
    if (message && 'report' in message) reports.set(pod.metadata.name, message.report);
  }
  return reports;
}

/** A step cache that answers by step name: hits in `reuse`, identical steps running in the runs of `waitFor`. */
export function cacheByStep(reuse: Map<string, ReusedLike> = new Map(), waitFor: Map<string, string> = new Map()): CacheView {
  return {
    lookup(_key, step) {
      const hit = reuse.get(step.name);
      if (hit) return { hit: { origin: `${hit.run}/${step.name}`, ...hit } };
      const twin = waitFor.get(step.name);
      return twin ? { runningIn: twin } : { miss: true };
    },
  };
}

export interface PlanInput extends Partial<RunFacts> {
  pipeline: Pipeline | undefined;
  /** Cache hits, by step name. */
  reuse?: Map<string, ReusedLike>;
  /** Steps whose identical twin runs in another run right now, by step name. */
  waitFor?: Map<string, string>;
}

/** Plans for the default run at NOW, with the configuration freezing `p` would give. */
export const plan = ({ pipeline: p, reuse, waitFor, ...facts }: PlanInput): RunPlan => {
  const run = facts.run ?? pipelineRun();
  return planRun(factsFor({ run, start: startFor(p, run), cache: cacheByStep(reuse, waitFor), ...facts }));
};

// Readers of a plan, the way a person reads a status.
export const stepOf = (plan: RunPlan, name: string): StepStatus => {
  const s = plan.status.steps?.find((x) => x.name === name);
  assert.ok(s, `step ${name} in status`);
  return s;
};
export const phases = (plan: RunPlan): Record<string, string> =>
  Object.fromEntries((plan.status.steps ?? []).map((s) => [s.name, s.phase]));
export const created = (plan: RunPlan): string[] => plan.create.map((c) => c.podName);
export const deleted = (plan: RunPlan): string[] => plan.delete.map((p) => p.metadata.name);
export const launchOf = (plan: RunPlan, name: string) => {
  const launch = plan.create.find((c) => c.step.name === name);
  assert.ok(launch, `launch of ${name}`);
  return launch;
};
export const condition = (plan: RunPlan): Condition => {
  const c = findCondition(plan.status.conditions, CONDITION_SUCCEEDED);
  assert.ok(c, 'Succeeded condition');
  return c;
};
export const eventReasons = (plan: RunPlan): string[] => plan.events.map((e) => e.reason);
/** A value as the API server stores it (undefined members dropped). */
export const stored = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
