// The writes of a pass, against the API: creates the children (step Pods, ModelVersions) and
// says what happened to each (AlreadyExists means done when the object is this run's; a refusal
// is reported, not thrown), writes the run's status with optimistic concurrency, and deletes
// Pods that must stop. reconcile.ts calls them in the one write order (docs/architecture.md).
import { LABEL_RUN_UID } from '../../api/v1alpha1/labels.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { canonicalJson } from '../../configuration/canonical-json.ts';
import type { KubeClient } from '../../kube/client.ts';
import { CONDITION_SUCCEEDED, Reasons, setCondition } from '../../api/v1alpha1/conditions.ts';
import { errorMessage, isAlreadyExists, isRejected, isTooLargeOrInvalid } from '../../kube/errors.ts';
import { truncate } from './pod-status.ts';
import type { Pod } from '../../kube/pod.ts';
import { MODEL_VERSIONS, PIPELINE_RUNS, PODS } from '../../kube/resources.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { buildStepPod, type AgentSettings } from './pod-spec.ts';
import type { RunPlan } from './plan.ts';
import { stepAccess } from './step-access.ts';

/** What creating a pass's Pods did. */
export interface PodsCreated {
  created: number;
  /** Pods the API server refused, by name, with why: their steps fail (status.ts folds them in). */
  rejected: Map<string, string>;
}

/** Creates the planned Pods; `onCreated` puts each in the Pod cache at once, so the next pass does not create it again. */
export async function createStepPods(
  client: KubeClient, run: PipelineRun, plan: RunPlan, agent: AgentSettings, store: ArtifactStore, now: Date, onCreated: (pod: Pod) => void,
): Promise<PodsCreated> {
  const rejected = new Map<string, string>();
  let created = 0;
  const configuration = plan.configuration;
  if (!configuration) return { created, rejected };
  const pipelineName = configuration.spec.pipeline.name;
  await Promise.all(
    plan.create.map(async ({ step, attempt, podName, inputs, item, variables }) => {
      const access = await stepAccess({
        store, step, attempt, inputs, now, ...(item ? { item: item.index } : {}),
        ...(agent.defaultTimeoutSeconds ? { defaultTimeoutSeconds: agent.defaultTimeoutSeconds } : {}),
        namespace: run.metadata.namespace ?? '',
        runUid: run.metadata.uid ?? '',
        configuration: { uri: configuration.uri, digest: configuration.digest },
      });
      const pod = buildStepPod({
        run, pipelineName, step, attempt, agent, access, parameters: plan.parameters, ...(item ? { item } : {}), ...(variables ? { variables } : {}),
        pipeline: configuration.spec.spec,
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

export type ModelVersionCreated =
  | { kind: 'created'; version: ModelVersion }
  /** It existed already and carries this run's uid: an earlier pass created it (its reply may have been lost). */
  | { kind: 'ours'; version: ModelVersion }
  /** The name is another run's. */
  | { kind: 'taken' };

/** Creates a ModelVersion; a refusal (admission, quota, the API down) is thrown with the API's message. */
export async function createModelVersion(client: KubeClient, version: ModelVersion, runUid: string): Promise<ModelVersionCreated> {
  const { namespace, name } = version.metadata;
  try {
    return { kind: 'created', version: await client.create<ModelVersion>(MODEL_VERSIONS, namespace, version) };
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    const existing = await client.get<ModelVersion>(MODEL_VERSIONS, namespace, name);
    return existing.metadata.labels?.[LABEL_RUN_UID] === runUid ? { kind: 'ours', version: existing } : { kind: 'taken' };
  }
}

export const statusChanged = (run: PipelineRun, status: PipelineRunStatus): boolean =>
  canonicalJson(run.status ?? {}) !== canonicalJson(status);

/**
 * The pass's one status write; the cached resourceVersion makes a decision from a stale cache
 * fail with 409. A status the API refuses for its content or size would be refused on every
 * pass, leaving the run without any status: it is replaced by a minimal Failed one that says why.
 */
export async function writeRunStatus(client: KubeClient, run: PipelineRun, status: PipelineRunStatus, now: Date): Promise<PipelineRun> {
  try {
    return await client.replaceStatus<PipelineRun>(PIPELINE_RUNS, { ...run, status });
  } catch (err) {
    if (!isTooLargeOrInvalid(err)) throw err;
    return client.replaceStatus<PipelineRun>(PIPELINE_RUNS, { ...run, status: refusedStatus(status, errorMessage(err), now) });
  }
}

/** What is left of a status the API refused: the run failed, and why. */
export function refusedStatus(status: PipelineRunStatus, why: string, now: Date): PipelineRunStatus {
  const message = truncate(`the API server refused the run's status (${why}); the run is stopped`);
  return {
    phase: 'Failed',
    ...(status.observedGeneration !== undefined ? { observedGeneration: status.observedGeneration } : {}),
    ...(status.startedAt ? { startedAt: status.startedAt } : {}),
    finishedAt: now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    ...(status.configuration ? { configuration: status.configuration } : {}),
    conditions: setCondition([], { type: CONDITION_SUCCEEDED, status: 'False', reason: Reasons.StatusRefused, message }, now),
  };
}

export async function deletePods(client: KubeClient, pods: Pod[]): Promise<void> {
  await Promise.all(pods.map((pod) => client.delete(PODS, pod.metadata.namespace, pod.metadata.name, { uid: pod.metadata.uid })));
}
