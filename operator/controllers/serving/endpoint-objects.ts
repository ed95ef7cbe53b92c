// The objects of one endpoint (pure): a Service and a Deployment named after the Pipeline,
// owned by it and labelled like step Pods. The server's Pod fetches the model with Ferry's agent
// (an init container, sha256 checked) into /ferry/inputs/model, so any server image works; the
// rolling update never takes a ready replica away before its successor is ready.
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import type { IService } from 'kubernetes-models/v1/Service';
import { ENV, FERRY_DIR, INPUTS_DIR, type InputSpec } from '../../agent/protocol.ts';
import { API_VERSION, type KubeObject } from '../../api/v1alpha1/common.ts';
import {
  ANNOTATION_DEFAULT_CONTAINER, ANNOTATION_GRANT_EXPIRES_AT, ANNOTATION_MODEL_VERSION, ANNOTATION_ROLLOUT_STARTED_AT, ANNOTATION_SERVING_INTENT, LABEL_ENDPOINT,
  LABEL_MANAGED_BY, LABEL_MODEL, LABEL_PIPELINE, MANAGED_BY,
} from '../../api/v1alpha1/labels.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { ServingSpec } from '../../api/v1alpha1/serving.ts';
import { digestOf } from '../../configuration/canonical-json.ts';
import { POD_SECURITY_CONTEXT, RESTRICTED_CONTAINER, WORK_VOLUME, agentContainer, storeAccess, type AgentSettings } from '../../kube/agent-pod.ts';
import { labelValue, shortenName } from '../../kube/names.ts';

export type Deployment = IDeployment & KubeObject;
export type Service = IService & KubeObject;

export const SERVER_CONTAINER = 'server';
export const MODEL_FETCH_CONTAINER = 'fetch-model';
/** The input name, so the model is at /ferry/inputs/model. */
export const MODEL_INPUT = 'model';
export const MODEL_PATH = `${INPUTS_DIR}/${MODEL_INPUT}`;
/** Long enough for endpoints kubectl-scaled or restarted weeks later; renewed (a rolling restart) at a third left. */
export const MODEL_GRANT_SECONDS = 30 * 24 * 3600;
/** After SIGTERM the server keeps answering this long, while kube-proxy takes it out of the Service. */
const PRE_STOP_SLEEP_SECONDS = 5;
const SERVICE_PORT_NAME = 'http';

/** The endpoint's Service and Deployment name: a DNS-1035 label from the Pipeline's name. */
export function endpointName(pipelineName: string): string {
  const label = pipelineName.replaceAll('.', '-');
  return shortenName(/^[a-z]/.test(label) ? label : `ep-${label}`);
}

export const endpointUrl = (name: string, namespace: string, port: number) => `http://${name}.${namespace}.svc:${port}`;

/**
 * What decides the served Pod template, as one hash: the serving spec and the model version.
 * The pinned image and the model URL are not in it: they follow from these, and renewing the URL
 * must not look like a new version. A failed rollout is remembered by it.
 */
export function servingIntent(serving: ServingSpec, version: ModelVersion): string {
  return digestOf({ serving, modelVersion: version.metadata.name, uid: version.metadata.uid ?? '', digest: version.spec.artifact.digest });
}

export interface EndpointInput {
  pipeline: Pipeline;
  serving: ServingSpec;
  version: ModelVersion;
  /** The server image pinned by digest. */
  image: string;
  /** The model's input for the agent: uri and digest, and a signed URL when the store grants them. */
  model: InputSpec;
  /** When `model.url` expires. */
  grantExpiresAt?: string;
  agent: AgentSettings;
}

const ownerOf = (pipeline: Pipeline) => [{
  apiVersion: API_VERSION, kind: 'Pipeline', name: pipeline.metadata.name, uid: pipeline.metadata.uid ?? '', controller: true, blockOwnerDeletion: true,
}];

function endpointLabels(pipeline: Pipeline, model: string): Record<string, string> {
  return {
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_ENDPOINT]: endpointName(pipeline.metadata.name),
    [LABEL_PIPELINE]: labelValue(pipeline.metadata.name),
    [LABEL_MODEL]: model,
  };
}

export function buildService(pipeline: Pipeline, serving: ServingSpec): Service {
  const name = endpointName(pipeline.metadata.name);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: pipeline.metadata.namespace, labels: endpointLabels(pipeline, serving.model.name), ownerReferences: ownerOf(pipeline) },
    spec: {
      type: 'ClusterIP',
      selector: { [LABEL_ENDPOINT]: name },
      ports: [{ name: SERVICE_PORT_NAME, port: serving.port, targetPort: SERVICE_PORT_NAME, protocol: 'TCP' }],
    },
  };
}

/** The server's Pod template for one version: the agent fetches the model, the server reads it. */
export function buildPodTemplate({ pipeline, serving, version, image, model, grantExpiresAt, agent }: EndpointInput): IPodTemplateSpec {
  const store = storeAccess(agent);
  const env: IEnvVar[] = [
    ...(serving.env ?? []).map(({ name, value, valueFrom }): IEnvVar => (valueFrom ? { name, valueFrom } : { name, value: value ?? '' })),
    // Ferry's last: the contract (docs/serving.md) is not the user's to override.
    { name: 'PORT', value: String(serving.port) },
    { name: 'FERRY_MODEL_PATH', value: MODEL_PATH },
    { name: 'FERRY_MODEL_NAME', value: version.spec.modelName },
    { name: 'FERRY_MODEL_VERSION', value: String(version.spec.version) },
    { name: 'FERRY_MODEL_DIGEST', value: version.spec.artifact.digest },
    { name: 'FERRY_MODEL_URI', value: version.spec.artifact.uri },
    { name: 'FERRY_ENDPOINT', value: endpointName(pipeline.metadata.name) },
  ];
  const server: IContainer = {
    name: SERVER_CONTAINER,
    image,
    ...(serving.command ? { command: [...serving.command] } : {}),
    ...(serving.args ? { args: [...serving.args] } : {}),
    env,
    ports: [{ name: SERVICE_PORT_NAME, containerPort: serving.port, protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: serving.readinessPath, port: SERVICE_PORT_NAME }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 2 },
    // NOTE: a sleep action, not an exec: the server image needs no shell.
    lifecycle: { preStop: { sleep: { seconds: PRE_STOP_SLEEP_SECONDS } } },
    ...(serving.resources ? { resources: serving.resources } : {}),
    volumeMounts: [{ name: WORK_VOLUME, mountPath: FERRY_DIR, readOnly: true }],
    securityContext: RESTRICTED_CONTAINER,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const fetch = agentContainer(agent, MODEL_FETCH_CONTAINER, 'fetch-inputs', [{ name: ENV.inputs, value: JSON.stringify([model]) }]);
  const intent = servingIntent(serving, version);
  return {
    metadata: {
      labels: { ...endpointLabels(pipeline, serving.model.name) },
      annotations: {
        [ANNOTATION_SERVING_INTENT]: intent,
        [ANNOTATION_MODEL_VERSION]: version.metadata.name,
        ...(grantExpiresAt ? { [ANNOTATION_GRANT_EXPIRES_AT]: grantExpiresAt } : {}),
        [ANNOTATION_DEFAULT_CONTAINER]: SERVER_CONTAINER,
      },
    },
    spec: {
      ...(serving.serviceAccountName ? { serviceAccountName: serving.serviceAccountName } : {}),
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      ...(pipeline.spec.imagePullSecrets?.length ? { imagePullSecrets: pipeline.spec.imagePullSecrets.map(({ name }) => ({ name })) } : {}),
      securityContext: POD_SECURITY_CONTEXT,
      terminationGracePeriodSeconds: 30,
      volumes: [{ name: WORK_VOLUME, emptyDir: agent.scratchSizeLimit ? { sizeLimit: agent.scratchSizeLimit } : {} }, ...store.volumes],
      initContainers: [fetch],
      containers: [server],
    },
  };
}

export function buildDeployment(input: EndpointInput, replicas: number, rolloutStartedAt: string): Deployment {
  const { pipeline, serving } = input;
  const name = endpointName(pipeline.metadata.name);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name,
      namespace: pipeline.metadata.namespace,
      labels: endpointLabels(pipeline, serving.model.name),
      annotations: { [ANNOTATION_ROLLOUT_STARTED_AT]: rolloutStartedAt },
      ownerReferences: ownerOf(pipeline),
    },
    spec: {
      replicas,
      selector: { matchLabels: { [LABEL_ENDPOINT]: name } },
      // maxUnavailable 0: a ready replica goes only once its successor is ready.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      progressDeadlineSeconds: serving.rolloutTimeoutSeconds,
      // The ReplicaSet of the version served before is what a failed rollout goes back to.
      revisionHistoryLimit: 3,
      template: buildPodTemplate(input),
    },
  };
}
