// Why a rollout did not become ready, in one line a person can act on (pure): read from the
// Pods of the new template, the worst first: the model fetch failing, the server exiting (with
// the last lines it wrote), an image that cannot be pulled, a Pod no node takes, or a server
// that runs but never answers its readiness path.
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { ServingSpec } from '../../api/v1alpha1/serving.ts';
import type { Pod } from '../../kube/pod.ts';
import { MODEL_FETCH_CONTAINER, SERVER_CONTAINER } from './endpoint-objects.ts';

const MESSAGE_MAX = 600;

const clip = (text: string) => {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > MESSAGE_MAX ? `${line.slice(0, MESSAGE_MAX - 1)}…` : line;
};

function containerProblem(status: IContainerStatus | undefined): string | undefined {
  if (!status) return undefined;
  const terminated = status.state?.terminated ?? status.lastState?.terminated;
  const waiting = status.state?.waiting;
  if (waiting && /ErrImagePull|ImagePullBackOff|InvalidImageName/.test(waiting.reason ?? '')) {
    return `its image cannot be pulled (${waiting.reason}${waiting.message ? `: ${clip(waiting.message)}` : ''})`;
  }
  if (waiting?.reason === 'CreateContainerConfigError') return `it cannot be created (${clip(waiting.message ?? waiting.reason)})`;
  if (terminated && terminated.exitCode !== 0) {
    const restarts = status.restartCount ? `, ${status.restartCount} restarts` : '';
    const said = terminated.message ? `: ${clip(terminated.message)}` : '';
    return `it exited with code ${terminated.exitCode}${terminated.reason && terminated.reason !== 'Error' ? ` (${terminated.reason})` : ''}${restarts}${said}`;
  }
  return undefined;
}

/** A sentence on what holds the new Pods back; `pods` are those of the template being rolled out. */
export function diagnoseRollout(pods: Pod[], serving: ServingSpec): string {
  if (pods.length === 0) return 'no Pod of the new version was created (see the Deployment\'s events)';
  for (const pod of pods) {
    const fetch = containerProblem(pod.status?.initContainerStatuses?.find((c) => c.name === MODEL_FETCH_CONTAINER));
    if (fetch) return `Pod ${pod.metadata.name}: fetching the model failed: ${fetch}`;
  }
  for (const pod of pods) {
    const server = containerProblem(pod.status?.containerStatuses?.find((c) => c.name === SERVER_CONTAINER));
    if (server) return `Pod ${pod.metadata.name}: the server container ${server}`;
  }
  for (const pod of pods) {
    const unschedulable = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
    if (unschedulable) return `Pod ${pod.metadata.name} is not scheduled: ${clip(unschedulable.message ?? unschedulable.reason ?? 'no node fits')}`;
  }
  const running = pods.find((p) => p.status?.containerStatuses?.some((c) => c.name === SERVER_CONTAINER && c.state?.running));
  if (running) return `Pod ${running.metadata.name}: the server runs but GET ${serving.readinessPath} on port ${serving.port} never answered 2xx`;
  const pod = pods[0]!;
  return `Pod ${pod.metadata.name} is ${pod.status?.phase ?? 'Pending'}${pod.status?.message ? `: ${clip(pod.status.message)}` : ''}`;
}
