// Reconciles one PipelineRun: gather (run and Pods from the caches, the frozen configuration,
// oversized step reports) → plan (pure) → apply (create Pods, write status, delete Pods, emit
// events). Safe to stop at any line and run again: the configuration is written once, Pod
// names are deterministic and status writes carry the resourceVersion.
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepReport } from '../../agent/protocol.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import type { Pod } from '../../kube/pod.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { ReconcileResult } from '../../runtime/controller.ts';
import { createStepPods, deletePods, statusChanged, writeRunStatus } from './apply.ts';
import { freezeRun, type FreezeDeps } from './freeze.ts';
import { planRun } from './plan.ts';
import type { AgentSettings } from './pod-spec.ts';
import { attemptOutcome, terminationMessageOf } from './pod-status.ts';

export interface PipelineRunDeps {
  client: KubeClient;
  runs: Cache<PipelineRun>;
  pods: Cache<Pod>;
  events: EventRecorder;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  freeze: FreezeDeps;
  store: ArtifactStore;
  agent: AgentSettings;
}

export function runKeyOfPod(pod: Pod): string | undefined {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'PipelineRun' && o.apiVersion === API_VERSION);
  return owner ? `${pod.metadata.namespace}/${owner.name}` : undefined;
}

/** The Pipeline a run starts from, as a cache key (none for a reproduction). */
export const pipelineKeysOfRun = (run: PipelineRun): string[] =>
  run.spec.pipelineRef ? [`${run.metadata.namespace}/${run.spec.pipelineRef.name}`] : [];

/** Reads the reports that succeeded Pods stored as manifests because they were too large. */
async function readManifests(store: ArtifactStore, run: PipelineRun, pods: Pod[]): Promise<Map<string, StepReport>> {
  const done = new Set((run.status?.steps ?? []).filter((s) => s.phase === 'Succeeded').map((s) => s.podName));
  const manifests = new Map<string, StepReport>();
  for (const pod of pods) {
    if (done.has(pod.metadata.name) || attemptOutcome(pod).state !== 'succeeded') continue;
    const message = terminationMessageOf(pod);
    if (message && 'manifest' in message) {
      manifests.set(pod.metadata.name, JSON.parse((await store.readAll(message.manifest.uri)).toString('utf8')) as StepReport);
    }
  }
  return manifests;
}

export async function reconcilePipelineRun(deps: PipelineRunDeps, key: string): Promise<ReconcileResult> {
  const cached = deps.runs.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return {};
  // NOTE: the cache's object is shared; planning works on a copy.
  const run = structuredClone(cached);
  const pods = deps.pods.byIndex(key).filter((pod) => pod.metadata.ownerReferences?.some((o) => o.uid === run.metadata.uid));
  const now = deps.clock.now();
  const finished = FINAL_RUN_PHASES.has(run.status?.phase ?? '');
  const start = finished ? undefined : await freezeRun(deps.freeze, run);
  if (start?.kind === 'frozen' && start.written) {
    deps.log.info('configuration frozen', { namespace: run.metadata.namespace, name: run.metadata.name, uri: start.uri, digest: start.digest });
  }
  const manifests = finished ? undefined : await readManifests(deps.store, run, pods);

  let plan = planRun({ run, start, pods, now, ...(manifests ? { manifests } : {}) });
  const { created, rejected } = await createStepPods(deps.client, run, plan, deps.agent);
  deps.metrics.stepPodsCreated.inc(created);
  if (rejected.size > 0) plan = planRun({ run, start, pods, now, rejected, ...(manifests ? { manifests } : {}) });

  if (statusChanged(run, plan.status)) {
    const written = await writeRunStatus(deps.client, run, plan.status);
    deps.runs.recordWrite(written);
    const log = deps.log.child({ namespace: run.metadata.namespace, name: run.metadata.name });
    if (plan.status.phase !== run.status?.phase) {
      log.info('run phase changed', { from: run.status?.phase ?? 'New', to: plan.status.phase, progress: plan.status.progress });
      if (plan.status.phase === 'Succeeded' || plan.status.phase === 'Failed' || plan.status.phase === 'Cancelled') {
        deps.metrics.runsFinished.inc({ phase: plan.status.phase });
      }
    }
    const reference = { ...run, apiVersion: API_VERSION, kind: 'PipelineRun' };
    for (const e of plan.events) {
      if (e.reason === 'StepRetrying') deps.metrics.stepRetries.inc();
      deps.events.record(reference, e.type, e.reason, e.message);
    }
  }
  await deletePods(deps.client, plan.delete);
  return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {};
}
