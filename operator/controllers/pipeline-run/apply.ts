// Carries out a run's plan against the API: creates step Pods (AlreadyExists means done),
// writes status with optimistic concurrency, deletes Pods that must stop, emits events.
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { canonicalJson } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage, isAlreadyExists, isRejected } from '../../kube/errors.ts';
import type { Pod } from '../../kube/pod.ts';
import { PIPELINE_RUNS, PODS } from '../../kube/resources.ts';
import { buildStepPod } from './pod-spec.ts';
import type { RunPlan } from './plan.ts';

/** Creates the planned Pods; returns the ones the API refused, with its message. */
export async function createStepPods(client: KubeClient, run: PipelineRun, plan: RunPlan): Promise<{ created: number; rejected: Map<string, string> }> {
  const rejected = new Map<string, string>();
  let created = 0;
  const pipelineName = plan.status.pipeline?.name ?? run.spec.pipelineRef.name;
  await Promise.all(
    plan.create.map(async ({ step, attempt, podName }) => {
      const pod = buildStepPod({ run, pipelineName, step, attempt, parameters: plan.parameters });
      try {
        await client.create<Pod>(PODS, run.metadata.namespace, pod);
        created++;
      } catch (err) {
        if (isAlreadyExists(err)) return;
        if (isRejected(err)) rejected.set(podName, `Pod rejected by the API server: ${errorMessage(err)}`);
        else throw err;
      }
    }),
  );
  return { created, rejected };
}

export const statusChanged = (run: PipelineRun, status: PipelineRunStatus): boolean =>
  canonicalJson(run.status ?? {}) !== canonicalJson(status);

export async function writeRunStatus(client: KubeClient, run: PipelineRun, status: PipelineRunStatus): Promise<PipelineRun> {
  return client.replaceStatus<PipelineRun>(PIPELINE_RUNS, { ...run, status });
}

export async function deletePods(client: KubeClient, pods: Pod[]): Promise<void> {
  await Promise.all(pods.map((pod) => client.delete(PODS, pod.metadata.namespace, pod.metadata.name, { uid: pod.metadata.uid })));
}
