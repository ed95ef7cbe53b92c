// Builds the Pod of one step attempt (pure). Three containers share an emptyDir at /ferry:
//   init fetch-inputs (agent) → init step (the user's image) → main publish-outputs (agent)
// so any image works (distroless too), nothing races, and the Pod needs no API access. The Pod
// is owned by its PipelineRun (garbage collected with it), labelled for selection, never
// restarted by the kubelet (Ferry owns retries), bounded by the step timeout, and runs with a
// restricted security context. The step's own volumes, token and podMetadata go onto the Pod
// field by field (never copied whole), and the user's volumes reach the step container only.
import type { IAffinity } from 'kubernetes-models/v1/Affinity';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { INodeSelectorTerm } from 'kubernetes-models/v1/NodeSelectorTerm';
import type { IPodAffinity } from 'kubernetes-models/v1/PodAffinity';
import type { IPodAffinityTerm } from 'kubernetes-models/v1/PodAffinityTerm';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { CONFIG_PATH, ENV, FERRY_DIR, INPUTS_DIR, OUTPUTS_DIR, RESULTS_DIR } from '../../agent/protocol.ts';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import {
  ANNOTATION_DEFAULT_CONTAINER, LABEL_ATTEMPT, LABEL_ITEM, LABEL_MANAGED_BY, LABEL_PIPELINE, LABEL_RUN, LABEL_STEP, MANAGED_BY,
} from '../../api/v1alpha1/labels.ts';
import type { ResolvedParameter, PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import {
  SERVICE_ACCOUNT_TOKEN_DIR, type AffinitySpec, type PipelineSpec, type PodMetadata, type StepSpec,
} from '../../api/v1alpha1/pipeline.ts';
import { reservedPodMetadataKey } from '../pipeline/validate.ts';
import { labelValue, stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { parameterEnvName } from './parameters.ts';
import { itemPodName } from './fan-out.ts';
import { escapeForKubelet, itemText, substitute as substituteVariables, type StepVariables } from './variables.ts';
import { FETCH_CONTAINER, PUBLISH_CONTAINER, STEP_CONTAINER } from './pod-status.ts';
import { GRANT_SLACK_SECONDS, type StepAccess } from './step-access.ts';
import { POD_SECURITY_CONTEXT, RESTRICTED_CONTAINER, WORK_VOLUME, agentContainer, storeAccess, type AgentSettings } from '../../kube/agent-pod.ts';

export { DEFAULT_RUN_AS_USER, type AgentSettings } from '../../kube/agent-pod.ts';

export interface StepPodInput {
  run: PipelineRun;
  pipelineName: string;
  step: StepSpec;
  attempt: number;
  parameters: ResolvedParameter[];
  /** One item of a forEach step: its Pod is `<run>-<step>-<index>-<attempt>`. */
  item?: { index: number; value: unknown };
  /** Results, item and run variables (variables.ts) besides the parameters. */
  variables?: Omit<StepVariables, 'params' | 'item'>;
  /** The objects the attempt reads and writes (step-access.ts). */
  access: StepAccess;
  agent: AgentSettings;
  /** From the frozen Pipeline spec: the Secrets the kubelet pulls step images with, and podMetadata for every step Pod. */
  pipeline?: Pick<PipelineSpec, 'imagePullSecrets' | 'podMetadata'>;
}

const TOKEN_VOLUME = 'ferry-service-account-token';
/** The projected token's lifetime; the kubelet renews it before it expires (at 80 %). */
const TOKEN_EXPIRATION_SECONDS = 3600;


/**
 * The step's volumes, built field by field from the four sources the API offers (claims,
 * ConfigMaps and Secrets of the namespace, emptyDirs), so no other type (hostPath) reaches the Pod
 * whatever a configuration holds. An emptyDir on disk without a size limit gets /ferry's.
 */
function stepVolumes(step: StepSpec, agent: AgentSettings): IVolume[] {
  return (step.volumes ?? []).map(({ name, persistentVolumeClaim: claim, configMap, secret, emptyDir }): IVolume => {
    const items = (list: Array<{ key: string; path: string }> | undefined) => (list ? { items: list.map(({ key, path }) => ({ key, path })) } : {});
    const mode = (m: number | undefined) => (m !== undefined ? { defaultMode: m } : {});
    if (claim) return { name, persistentVolumeClaim: { claimName: claim.claimName, ...(claim.readOnly ? { readOnly: true } : {}) } };
    if (configMap) return { name, configMap: { name: configMap.name, ...items(configMap.items), ...mode(configMap.defaultMode) } };
    if (secret) return { name, secret: { secretName: secret.secretName, ...items(secret.items), ...mode(secret.defaultMode) } };
    const memory = emptyDir?.medium === 'Memory';
    const sizeLimit = emptyDir?.sizeLimit ?? (memory ? undefined : agent.scratchSizeLimit);
    return { name, emptyDir: { ...(memory ? { medium: 'Memory' } : {}), ...(sizeLimit !== undefined ? { sizeLimit } : {}) } };
  });
}

const stepMounts = (step: StepSpec): IVolumeMount[] =>
  (step.volumeMounts ?? []).map(({ name, mountPath, readOnly, subPath }) => ({
    name, mountPath, ...(readOnly ? { readOnly: true } : {}), ...(subPath ? { subPath } : {}),
  }));

/**
 * The service account token as the ServiceAccount admission plugin would mount it (a bound,
 * expiring token, the cluster CA and the namespace), but as a volume of the step container only.
 * NOTE: the Pod's automountServiceAccountToken stays false: automounting puts the token into every
 * container, the agents too, and they need no API access.
 */
const tokenVolume = (): IVolume => ({
  name: TOKEN_VOLUME,
  projected: {
    defaultMode: 0o644,
    sources: [
      { serviceAccountToken: { path: 'token', expirationSeconds: TOKEN_EXPIRATION_SECONDS } },
      { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
    ],
  },
});

type NodeTerm = NonNullable<NonNullable<AffinitySpec['nodeAffinity']>['preferredDuringSchedulingIgnoredDuringExecution']>[number]['preference'];
type PodTerm = NonNullable<NonNullable<AffinitySpec['podAffinity']>['requiredDuringSchedulingIgnoredDuringExecution']>[number];

/** The affinity subset the API offers, field by field: pod terms never name other namespaces, node terms never name nodes. */
function affinityOf(affinity: AffinitySpec): IAffinity {
  const expressions = <O extends string>(list: Array<{ key: string; operator: O; values?: string[] }> | undefined) =>
    (list ?? []).map(({ key, operator, values }) => ({ key, operator, ...(values ? { values: [...values] } : {}) }));
  const nodeTerm = (term: NodeTerm): INodeSelectorTerm => ({ matchExpressions: expressions(term.matchExpressions) });
  const podTerm = ({ labelSelector, topologyKey }: PodTerm): IPodAffinityTerm => ({
    topologyKey,
    ...(labelSelector ? {
      labelSelector: {
        ...(labelSelector.matchLabels ? { matchLabels: { ...labelSelector.matchLabels } } : {}),
        ...(labelSelector.matchExpressions ? { matchExpressions: expressions(labelSelector.matchExpressions) } : {}),
      },
    } : {}),
  });
  const pods = (spec: AffinitySpec['podAffinity']): IPodAffinity | undefined => spec && {
    ...(spec.requiredDuringSchedulingIgnoredDuringExecution ? { requiredDuringSchedulingIgnoredDuringExecution: spec.requiredDuringSchedulingIgnoredDuringExecution.map(podTerm) } : {}),
    ...(spec.preferredDuringSchedulingIgnoredDuringExecution ? {
      preferredDuringSchedulingIgnoredDuringExecution: spec.preferredDuringSchedulingIgnoredDuringExecution.map(({ weight, podAffinityTerm }) => ({ weight, podAffinityTerm: podTerm(podAffinityTerm) })),
    } : {}),
  };
  const node = affinity.nodeAffinity;
  const required = node?.requiredDuringSchedulingIgnoredDuringExecution;
  const preferred = node?.preferredDuringSchedulingIgnoredDuringExecution;
  const podAffinity = pods(affinity.podAffinity);
  const podAntiAffinity = pods(affinity.podAntiAffinity);
  return {
    ...(node ? {
      nodeAffinity: {
        ...(required ? { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: required.nodeSelectorTerms.map(nodeTerm) } } : {}),
        ...(preferred ? { preferredDuringSchedulingIgnoredDuringExecution: preferred.map(({ weight, preference }) => ({ weight, preference: nodeTerm(preference) })) } : {}),
      },
    } : {}),
    ...(podAffinity ? { podAffinity } : {}),
    ...(podAntiAffinity ? { podAntiAffinity } : {}),
  };
}

/** The user's labels or annotations, the run's over the Pipeline's, without the keys that are not theirs (validate.ts refuses those earlier). */
function userMetadata(kind: 'label' | 'annotation', ...sources: Array<PodMetadata | undefined>): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const source of sources) {
    for (const [key, value] of Object.entries((kind === 'label' ? source?.labels : source?.annotations) ?? {})) {
      if (reservedPodMetadataKey(key, kind) === undefined) merged[key] = value;
    }
  }
  return merged;
}

/**
 * How far the kubelet's activeDeadlineSeconds lies beyond the step's timeout. The planner times
 * a step from when its own container started (image pulls and input downloads do not count);
 * the kubelet counts from the Pod's start, so its deadline is only a backstop, never earlier
 * than the planner's. NOTE: the same slack as the signed URLs' lifetime (step-access.ts): the
 * kubelet stops a Pod by the time its URLs expire.
 */
export const DEADLINE_SLACK_SECONDS = GRANT_SLACK_SECONDS;

/**
 * The Pod's activeDeadlineSeconds: the step's timeout (or the default one) plus the slack; none
 * without a timeout. An item of a forEach step gets the step's timeout itself: the kubelet
 * enforces it (the planner never deletes an item's Pod, which is the item's only record).
 */
export function deadlineSeconds(step: StepSpec, agent: AgentSettings, item = false): number | undefined {
  if (item && step.timeoutSeconds) return step.timeoutSeconds;
  const timeout = step.timeoutSeconds ?? agent.defaultTimeoutSeconds;
  return timeout ? timeout + DEADLINE_SLACK_SECONDS : undefined;
}

export function buildStepPod({ run, pipelineName, step, attempt, parameters, access, agent, pipeline, item, variables }: StepPodInput): Pod {
  const runName = run.metadata.name;
  const values = new Map(parameters.map((p) => [p.name, p.value]));
  const substitute = (text: string) => substituteVariables(text, { ...variables, params: values, ...(item ? { item } : {}) });

  const work: IVolumeMount = { name: WORK_VOLUME, mountPath: FERRY_DIR };
  const store = storeAccess(agent);
  const env: IEnvVar[] = [
    { name: 'FERRY_INPUTS_DIR', value: INPUTS_DIR },
    { name: 'FERRY_OUTPUTS_DIR', value: OUTPUTS_DIR },
    { name: 'FERRY_CONFIG', value: CONFIG_PATH },
    { name: 'FERRY_RUN', value: runName },
    { name: 'FERRY_PIPELINE', value: pipelineName },
    { name: 'FERRY_STEP', value: step.name },
    { name: 'FERRY_ATTEMPT', value: String(attempt) },
    ...(step.results?.length ? [{ name: 'FERRY_RESULTS_DIR', value: RESULTS_DIR }] : []),
    ...(item ? [{ name: 'FERRY_ITEM', value: escapeForKubelet(itemText(item.value)) }, { name: 'FERRY_ITEM_INDEX', value: String(item.index) }] : []),
    ...(variables?.run ? [{ name: 'FERRY_RUN_STATUS', value: variables.run.status }, { name: 'FERRY_FAILED_STEPS', value: variables.run.failedSteps.join(',') }] : []),
    ...(step.parameters ?? []).map((name) => ({ name: parameterEnvName(name), value: escapeForKubelet(values.get(name) ?? '') })),
    ...(step.env ?? []).map(({ name, value, valueFrom }): IEnvVar =>
      valueFrom ? { name, valueFrom } : { name, value: substitute(value ?? '') },
    ),
  ];

  const container: IContainer = {
    name: STEP_CONTAINER,
    image: step.image,
    ...(step.command ? { command: step.command.map(substitute) } : {}),
    ...(step.args ? { args: step.args.map(substitute) } : {}),
    env,
    ...(step.resources ? { resources: step.resources } : {}),
    // NOTE: the user's volumes and the token go into this container only; the agents keep /ferry.
    volumeMounts: [work, ...stepMounts(step), ...(step.automountServiceAccountToken ? [{ name: TOKEN_VOLUME, mountPath: SERVICE_ACCOUNT_TOKEN_DIR, readOnly: true }] : [])],
    securityContext: RESTRICTED_CONTAINER,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

  const fetch = agentContainer(agent, FETCH_CONTAINER, 'fetch-inputs', [
    { name: ENV.inputs, value: JSON.stringify(access.inputs) },
    { name: ENV.configuration, value: JSON.stringify(access.configuration) },
  ]);
  const publish = agentContainer(agent, PUBLISH_CONTAINER, 'publish-outputs', [
    { name: ENV.namespace, value: run.metadata.namespace ?? '' },
    { name: ENV.outputs, value: JSON.stringify(access.outputs) },
    ...(step.results?.length ? [{ name: ENV.results, value: JSON.stringify(step.results.map((r) => r.name)) }] : []),
    ...(access.report ? [{ name: ENV.report, value: JSON.stringify(access.report) }] : []),
  ]);

  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: item ? itemPodName(runName, step.name, item.index, attempt) : stepPodName(runName, step.name, attempt),
      namespace: run.metadata.namespace,
      // Ferry's labels last: a user's label never replaces them.
      labels: {
        ...userMetadata('label', pipeline?.podMetadata, run.spec.podMetadata),
        [LABEL_MANAGED_BY]: MANAGED_BY,
        [LABEL_RUN]: labelValue(runName),
        [LABEL_PIPELINE]: labelValue(pipelineName),
        [LABEL_STEP]: step.name,
        [LABEL_ATTEMPT]: String(attempt),
        ...(item ? { [LABEL_ITEM]: String(item.index) } : {}),
      },
      // kubectl logs/exec pick this container when none is named; kubectl finds init containers by it too.
      annotations: { ...userMetadata('annotation', pipeline?.podMetadata, run.spec.podMetadata), [ANNOTATION_DEFAULT_CONTAINER]: STEP_CONTAINER },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: 'PipelineRun',
          name: runName,
          uid: run.metadata.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      restartPolicy: 'Never',
      ...(step.serviceAccountName ? { serviceAccountName: step.serviceAccountName } : {}),
      // NOTE: always false, even when the step asks for its token: that is a volume of the step container (tokenVolume).
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      ...(pipeline?.imagePullSecrets?.length ? { imagePullSecrets: pipeline.imagePullSecrets.map(({ name }) => ({ name })) } : {}),
      ...(step.priorityClassName ? { priorityClassName: step.priorityClassName } : {}),
      ...(step.runtimeClassName ? { runtimeClassName: step.runtimeClassName } : {}),
      ...(deadlineSeconds(step, agent, item !== undefined) ? { activeDeadlineSeconds: deadlineSeconds(step, agent, item !== undefined) } : {}),
      ...(step.nodeSelector ? { nodeSelector: step.nodeSelector } : {}),
      ...(step.tolerations ? { tolerations: step.tolerations } : {}),
      ...(step.affinity ? { affinity: affinityOf(step.affinity) } : {}),
      securityContext: POD_SECURITY_CONTEXT,
      volumes: [
        { name: WORK_VOLUME, emptyDir: agent.scratchSizeLimit ? { sizeLimit: agent.scratchSizeLimit } : {} },
        ...store.volumes,
        ...stepVolumes(step, agent),
        ...(step.automountServiceAccountToken ? [tokenVolume()] : []),
      ],
      initContainers: [fetch, container],
      containers: [publish],
    },
  };
}
