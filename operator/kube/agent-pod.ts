// The parts every Pod Ferry makes shares, whether a step attempt (pipeline-run/pod-spec.ts) or
// an endpoint's server (serving/endpoint-objects.ts): the agent containers that move artifacts
// through the shared /ferry emptyDir, how they reach the store, and the restricted security
// contexts.
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPodSecurityContext } from 'kubernetes-models/v1/PodSecurityContext';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { ENV, FERRY_DIR } from '../agent/protocol.ts';

/** Non-root user the step runs as unless its image says otherwise. */
export const DEFAULT_RUN_AS_USER = 65532;

/** How Ferry's Pods reach the agent and the artifact store (from the operator's config). */
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
  /** The timeout of a step that sets none (its activeDeadlineSeconds is that plus DEADLINE_SLACK_SECONDS). */
  defaultTimeoutSeconds?: number;
}

/** The emptyDir at /ferry the agents and the user's container share. */
export const WORK_VOLUME = 'ferry';
const STORE_VOLUME = 'ferry-artifacts';
const GCS_KEY_VOLUME = 'ferry-gcs-key';
const GCS_KEY_DIR = '/var/run/secrets/ferry/gcs';

export const RESTRICTED_CONTAINER = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };

export const POD_SECURITY_CONTEXT: IPodSecurityContext = {
  runAsNonRoot: true,
  runAsUser: DEFAULT_RUN_AS_USER,
  runAsGroup: DEFAULT_RUN_AS_USER,
  fsGroup: DEFAULT_RUN_AS_USER,
  seccompProfile: { type: 'RuntimeDefault' },
};

/** Volumes and mounts the agent needs to reach the store, and the env that points at it. */
export function storeAccess(agent: AgentSettings): { volumes: IVolume[]; mounts: IVolumeMount[]; env: IEnvVar[] } {
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

/** An agent container (fetch-inputs or publish-outputs) with /ferry and what it needs to reach the store. */
export function agentContainer(agent: AgentSettings, name: string, phase: string, extraEnv: IEnvVar[]): IContainer {
  const store = storeAccess(agent);
  return {
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
    volumeMounts: [{ name: WORK_VOLUME, mountPath: FERRY_DIR }, ...store.mounts],
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    securityContext: RESTRICTED_CONTAINER,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
