// Builds the Pod of one step attempt (pure). Three containers share an emptyDir at /ferry:
//   init fetch-inputs (agent) → init step (the user's image) → main publish-outputs (agent)
// so any image works (distroless too), nothing races, and the Pod needs no API access. The Pod
// is owned by its PipelineRun (garbage collected with it), labelled for selection, never
// restarted by the kubelet (Ferry owns retries), bounded by the step timeout, and runs with a
// restricted security context.
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { CONFIG_PATH, ENV, FERRY_DIR, INPUTS_DIR, OUTPUTS_DIR } from '../../agent/protocol.ts';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import {
  LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_PIPELINE, LABEL_RUN, LABEL_STEP, MANAGED_BY,
} from '../../api/v1alpha1/labels.ts';
import type { ResolvedParameter, PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { labelValue, stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { escapeForKubelet, parameterEnvName, substituteParameters } from './parameters.ts';
import { FETCH_CONTAINER, PUBLISH_CONTAINER, STEP_CONTAINER } from './pod-status.ts';
import type { StepAccess } from './step-access.ts';

/** Non-root user the step runs as unless its image says otherwise. */
export const DEFAULT_RUN_AS_USER = 65532;

/** How step Pods reach the agent and the artifact store (from the operator's config). */
export interface AgentSettings {
  /** The operator's own image; its entry point is `ferry`. */
  image: string;
  /** The artifact store root, e.g. file:///var/lib/ferry/artifacts or gs://bucket/prefix. */
  storeRoot: string;
  /** Step Pods get signed URLs (step-access.ts): no store volume, credential or root is given to them. */
  signedUrls: boolean;
  /** For a file:// store: the PersistentVolumeClaim mounted at the store's path. */
  storeClaim?: string;
  /** For gs://: a Secret with a service account key (`key.json`); workload identity needs none. */
  gcsCredentialsSecret?: string;
  /** A GCS endpoint override (an emulator in tests). */
  gcsEndpoint?: string;
  /** The size limit of the /ferry emptyDir (inputs, outputs, the step's scratch); the kubelet evicts a Pod past it. */
  scratchSizeLimit?: string;
  /** activeDeadlineSeconds of a step that sets no timeout. */
  defaultTimeoutSeconds?: number;
}

export interface StepPodInput {
  run: PipelineRun;
  pipelineName: string;
  step: StepSpec;
  attempt: number;
  parameters: ResolvedParameter[];
  /** The objects the attempt reads and writes (step-access.ts). */
  access: StepAccess;
  agent: AgentSettings;
}

const WORK_VOLUME = 'ferry';
const STORE_VOLUME = 'ferry-artifacts';
const GCS_KEY_VOLUME = 'ferry-gcs-key';
const GCS_KEY_DIR = '/var/run/secrets/ferry/gcs';

const restricted = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };

/** Volumes and mounts the agent needs to reach the store, and the env that points at it. */
function storeAccess(agent: AgentSettings): { volumes: IVolume[]; mounts: IVolumeMount[]; env: IEnvVar[] } {
  if (agent.signedUrls) return { volumes: [], mounts: [], env: [] };
  const env: IEnvVar[] = [{ name: ENV.store, value: agent.storeRoot }];
  if (agent.gcsEndpoint) env.push({ name: ENV.gcsEndpoint, value: agent.gcsEndpoint });
  if (agent.storeRoot.startsWith('file://') && agent.storeClaim) {
    const path = new URL(agent.storeRoot).pathname;
    return {
      volumes: [{ name: STORE_VOLUME, persistentVolumeClaim: { claimName: agent.storeClaim } }],
      mounts: [{ name: STORE_VOLUME, mountPath: path }],
      env,
    };
  }
  if (agent.storeRoot.startsWith('gs://') && agent.gcsCredentialsSecret) {
    env.push({ name: 'GOOGLE_APPLICATION_CREDENTIALS', value: `${GCS_KEY_DIR}/key.json` });
    return {
      volumes: [{ name: GCS_KEY_VOLUME, secret: { secretName: agent.gcsCredentialsSecret } }],
      mounts: [{ name: GCS_KEY_VOLUME, mountPath: GCS_KEY_DIR, readOnly: true }],
      env,
    };
  }
  return { volumes: [], mounts: [], env };
}

export function buildStepPod({ run, pipelineName, step, attempt, parameters, access, agent }: StepPodInput): Pod {
  const runName = run.metadata.name;
  const values = new Map(parameters.map((p) => [p.name, p.value]));
  const substitute = (text: string) => substituteParameters(text, values);

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
    volumeMounts: [work],
    securityContext: restricted,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

  const agentContainer = (name: string, phase: string, extraEnv: IEnvVar[]): IContainer => ({
    name,
    image: agent.image,
    args: ['agent', phase],
    env: [
      { name: ENV.dir, value: FERRY_DIR },
      ...store.env,
      ...extraEnv,
      { name: ENV.terminationLog, value: '/dev/termination-log' },
      // A small young generation returns streamed buffers sooner: peak RSS stays bounded (bench/agent-memory.ts).
      { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1' },
    ],
    volumeMounts: [work, ...store.mounts],
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    securityContext: restricted,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  });
  const fetch = agentContainer(FETCH_CONTAINER, 'fetch-inputs', [
    { name: ENV.inputs, value: JSON.stringify(access.inputs) },
    { name: ENV.configuration, value: JSON.stringify(access.configuration) },
  ]);
  const publish = agentContainer(PUBLISH_CONTAINER, 'publish-outputs', [
    { name: ENV.namespace, value: run.metadata.namespace ?? '' },
    { name: ENV.outputs, value: JSON.stringify(access.outputs) },
    ...(access.report ? [{ name: ENV.report, value: JSON.stringify(access.report) }] : []),
  ]);

  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: stepPodName(runName, step.name, attempt),
      namespace: run.metadata.namespace,
      labels: {
        [LABEL_MANAGED_BY]: MANAGED_BY,
        [LABEL_RUN]: labelValue(runName),
        [LABEL_PIPELINE]: labelValue(pipelineName),
        [LABEL_STEP]: step.name,
        [LABEL_ATTEMPT]: String(attempt),
      },
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
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      ...((step.timeoutSeconds ?? agent.defaultTimeoutSeconds) ? { activeDeadlineSeconds: step.timeoutSeconds ?? agent.defaultTimeoutSeconds } : {}),
      ...(step.nodeSelector ? { nodeSelector: step.nodeSelector } : {}),
      ...(step.tolerations ? { tolerations: step.tolerations } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: DEFAULT_RUN_AS_USER,
        runAsGroup: DEFAULT_RUN_AS_USER,
        fsGroup: DEFAULT_RUN_AS_USER,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      volumes: [{ name: WORK_VOLUME, emptyDir: agent.scratchSizeLimit ? { sizeLimit: agent.scratchSizeLimit } : {} }, ...store.volumes],
      initContainers: [fetch, container],
      containers: [publish],
    },
  };
}
