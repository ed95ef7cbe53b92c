// Plays the kubelet's part where no kubelet runs: it finds the step Pods in a namespace and
// moves their status along (Running, then Succeeded or Failed) as each test's script says, or
// writes what the kubelet and scheduler write when things go wrong: an OOMKilled step, an
// eviction, an image that cannot be pulled, a Pod no node can run.
// It records when it first saw each Pod, with millisecond precision, for timing assertions.
import type { KubeClient } from '../../operator/kube/client.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PODS } from '../../operator/kube/resources.ts';

export type Behavior =
  | { outcome: 'succeed'; afterMs?: number }
  | { outcome: 'fail'; afterMs?: number; exitCode?: number; message?: string }
  /** Stays Running until the test (or the operator) does something. */
  | { outcome: 'run' }
  /** The step container is killed for its memory: terminated, reason OOMKilled, exit code 137. */
  | { outcome: 'oom'; afterMs?: number }
  /** The kubelet evicts the Pod (node pressure, ephemeral storage): phase Failed, reason Evicted. */
  | { outcome: 'evict'; afterMs?: number; message?: string }
  /** Stays Pending, the step container waiting on ImagePullBackOff, pulling since `sinceMs` ago (0: now). */
  | { outcome: 'imagePull'; sinceMs?: number }
  /** Stays Pending: PodScheduled False with reason Unschedulable, since `sinceMs` ago (0: now). */
  | { outcome: 'unschedulable'; sinceMs?: number };

/** What the kubelet says of an eviction for ephemeral storage. */
export const EVICTION_MESSAGE = 'The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 9Gi. Container step was using 20Gi, request is 0, has larger consumption of ephemeral-storage. ';

export interface SeenPod {
  name: string;
  step: string;
  attempt: number;
  seenAt: number;
  finishedAt?: number;
}

export class FakeKubelet {
  readonly seen = new Map<string, SeenPod>();
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly behave: (pod: Pod) => Behavior;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(client: KubeClient, namespace: string, behave: (pod: Pod) => Behavior) {
    this.client = client;
    this.namespace = namespace;
    this.behave = behave;
  }

  start(intervalMs = 100): this {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
  }

  /** Pods seen for one step, in attempt order. */
  attemptsOf(step: string): SeenPod[] {
    return [...this.seen.values()].filter((p) => p.step === step).sort((a, b) => a.attempt - b.attempt);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      // Finished Pods are left out: with thousands of them a full list every tick would load the API server.
      const { items } = await this.client.list<Pod>(PODS, this.namespace, undefined, undefined, { fieldSelector: 'status.phase!=Succeeded,status.phase!=Failed' });
      for (const pod of items) {
        const name = pod.metadata.name;
        if (this.seen.has(name) || pod.metadata.deletionTimestamp) continue;
        const record: SeenPod = {
          name,
          step: pod.metadata.labels?.['ferry.dev/step'] ?? '',
          attempt: Number(pod.metadata.labels?.['ferry.dev/attempt'] ?? 0),
          seenAt: Date.now(),
        };
        this.seen.set(name, record);
        const work = this.play(pod, record).catch(() => undefined); // a Pod deleted meanwhile is fine
        this.pending.add(work);
        void work.finally(() => this.pending.delete(work));
      }
    } catch {
      // The API server may be restarting in a test; the next tick tries again.
    } finally {
      this.busy = false;
    }
  }

  private async play(pod: Pod, record: SeenPod): Promise<void> {
    const behavior = this.behave(pod);
    if (behavior.outcome === 'unschedulable') {
      const since = new Date(Date.now() - (behavior.sinceMs ?? 0)).toISOString();
      await this.client.mergePatch(PODS, this.namespace, pod.metadata.name, {
        status: {
          phase: 'Pending',
          conditions: [{
            type: 'PodScheduled', status: 'False', reason: 'Unschedulable', lastTransitionTime: since,
            message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.',
          }],
        },
      }, 'status');
      return;
    }
    if (behavior.outcome === 'imagePull') {
      // Scheduled, fetch-inputs done, the step's image back-off: all of it `sinceMs` ago.
      const since = new Date(Date.now() - (behavior.sinceMs ?? 0)).toISOString();
      const image = pod.spec?.initContainers?.at(-1)?.image ?? '';
      await this.setStatus(pod, 'Pending', since, { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` } }, {
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: since },
          { type: 'Initialized', status: 'False', reason: 'ContainersNotInitialized', lastTransitionTime: since },
          { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: since },
        ],
      });
      return;
    }
    const startTime = new Date().toISOString();
    // The step (the last init container) runs; the agent containers are taken to succeed.
    await this.setStatus(pod, 'Pending', startTime, { running: { startedAt: startTime } });
    if (behavior.outcome === 'run') return;
    await new Promise((r) => setTimeout(r, behavior.afterMs ?? 0));
    // NOTE: the Pod ended now, before the status write says so: the operator may see that write
    // and start the next Pod before the write's answer comes back here.
    record.finishedAt = Date.now();
    const finishedAt = new Date(record.finishedAt).toISOString();
    const ended = (exitCode: number, reason: string, extra: Record<string, unknown> = {}) =>
      ({ terminated: { exitCode, reason, startedAt: startTime, finishedAt, ...extra } });
    if (behavior.outcome === 'oom') {
      await this.setStatus(pod, 'Failed', startTime, ended(137, 'OOMKilled'));
    } else if (behavior.outcome === 'evict') {
      // The kubelet kills the containers (137) and says why on the Pod.
      const message = behavior.message ?? EVICTION_MESSAGE;
      await this.setStatus(pod, 'Failed', startTime, ended(137, 'Error'), {
        reason: 'Evicted', message,
        conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'TerminationByKubelet', message, lastTransitionTime: finishedAt }],
      });
    } else {
      const exitCode = behavior.outcome === 'succeed' ? 0 : behavior.exitCode ?? 1;
      const message = behavior.outcome === 'fail' && behavior.message ? { message: behavior.message } : {};
      await this.setStatus(pod, exitCode === 0 ? 'Succeeded' : 'Failed', startTime, ended(exitCode, exitCode === 0 ? 'Completed' : 'Error', message));
    }
  }

  private async setStatus(pod: Pod, phase: string, startTime: string, stepState: Record<string, unknown>, podFields: Record<string, unknown> = {}): Promise<void> {
    const done = { terminated: { exitCode: 0, reason: 'Completed', startedAt: startTime, finishedAt: startTime } };
    const status = (name: string, image: string | undefined, state: Record<string, unknown>) =>
      ({ name, image: image ?? '', imageID: '', ready: false, restartCount: 0, state });
    const init = pod.spec?.initContainers ?? [];
    const main = pod.spec?.containers ?? [];
    await this.client.mergePatch(PODS, this.namespace, pod.metadata.name, {
      status: {
        phase,
        startTime,
        initContainerStatuses: init.map((c, i) => status(c.name, c.image, i === init.length - 1 ? stepState : done)),
        containerStatuses: main.map((c) => status(c.name, c.image, phase === 'Succeeded' ? done : { waiting: { reason: 'PodInitializing' } })),
        ...podFields,
      },
    }, 'status');
  }
}
