// Carries out a run's plan against the API: creates step Pods (AlreadyExists means done, if the
// Pod is this run's), writes status with optimistic concurrency, deletes Pods that must stop.
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { canonicalJson } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import { errorMessage, isAlreadyExists, isRejected } from '../../kube/errors.ts';
import type { Pod } from '../../kube/pod.ts';
import { PIPELINE_RUNS, PODS } from '../../kube/resources.ts';
import { buildStepPod, type AgentSettings } from './pod-spec.ts';
import type { RunPlan } from './plan.ts';

/** Creates the planned Pods; returns the ones that cannot be created, with why. */
export async function createStepPods(
  client: KubeClient, run: PipelineRun, plan: RunPlan, agent: AgentSettings, onCreated: (pod: Pod) => void = () => {},
): Promise<{ created: number; rejected: Map<string, string> }> {
  const rejected = new Map<string, string>();
  let created = 0;
  const configuration = plan.configuration;
  if (!configuration) return { created, rejected };
  const pipelineName = configuration.spec.pipeline.name;
  await Promise.all(
    plan.create.map(async ({ step, attempt, podName, inputs }) => {
      const pod = buildStepPod({
        run, pipelineName, step, attempt, inputs, agent,
        parameters: plan.parameters,
        configuration: { uri: configuration.uri, digest: configuration.digest },
      });
      try {
        onCreated(await client.create<Pod>(PODS, run.metadata.namespace, pod));
        created++;
      } catch (err) {
        if (isAlreadyExists(err)) {
          // Ours from an earlier pass, or another run's Pod that happens to have the same name.
          const existing = await client.getOrUndefined<Pod>(PODS, run.metadata.namespace, podName);
          const owner = existing?.metadata.ownerReferences?.find((o) => o.controller);
          if (existing && owner && owner.uid !== run.metadata.uid) {
            rejected.set(podName, `Pod name ${podName} is taken by a Pod of ${owner.kind} "${owner.name}"; give the run another name`);
          }
          return;
        }
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
