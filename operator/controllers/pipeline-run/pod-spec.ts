// Builds the Pod of one step attempt (pure). The Pod is owned by its PipelineRun (garbage
// collected with it), labelled for selection, never restarted by the kubelet (Ferry owns
// retries), bounded by the step timeout, and runs with a restricted security context.
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import {
  LABEL_ATTEMPT, LABEL_MANAGED_BY, LABEL_PIPELINE, LABEL_RUN, LABEL_STEP, MANAGED_BY,
} from '../../api/v1alpha1/labels.ts';
import type { ResolvedParameter, PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { labelValue, stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { parameterEnvName, substituteParameters } from './parameters.ts';
import { STEP_CONTAINER } from './pod-status.ts';

/** Non-root user the step runs as unless its image says otherwise. */
export const DEFAULT_RUN_AS_USER = 65532;

export interface StepPodInput {
  run: PipelineRun;
  pipelineName: string;
  step: StepSpec;
  attempt: number;
  parameters: ResolvedParameter[];
}

export function buildStepPod({ run, pipelineName, step, attempt, parameters }: StepPodInput): Pod {
  const runName = run.metadata.name;
  const values = new Map(parameters.map((p) => [p.name, p.value]));
  const substitute = (text: string) => substituteParameters(text, values);

  const env: IEnvVar[] = [
    { name: 'FERRY_RUN', value: runName },
    { name: 'FERRY_PIPELINE', value: pipelineName },
    { name: 'FERRY_STEP', value: step.name },
    { name: 'FERRY_ATTEMPT', value: String(attempt) },
    ...(step.parameters ?? []).map((name) => ({ name: parameterEnvName(name), value: values.get(name) ?? '' })),
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
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

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
      ...(step.timeoutSeconds ? { activeDeadlineSeconds: step.timeoutSeconds } : {}),
      ...(step.nodeSelector ? { nodeSelector: step.nodeSelector } : {}),
      ...(step.tolerations ? { tolerations: step.tolerations } : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: DEFAULT_RUN_AS_USER,
        runAsGroup: DEFAULT_RUN_AS_USER,
        fsGroup: DEFAULT_RUN_AS_USER,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [container],
    },
  };
}
