// Plays the kubelet's part where no kubelet runs: it finds the step Pods in a namespace and
// moves their status along (Running, then Succeeded or Failed) as each test's script says.
// It records when it first saw each Pod, with millisecond precision, for timing assertions.
import type { KubeClient } from '../../operator/kube/client.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PODS } from '../../operator/kube/resources.ts';

export type Behavior =
  | { outcome: 'succeed'; afterMs?: number }
  | { outcome: 'fail'; afterMs?: number; exitCode?: number; message?: string }
  /** Stays Running until the test (or the operator) does something. */
  | { outcome: 'run' };

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
      const { items } = await this.client.list<Pod>(PODS, this.namespace);
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
    const startTime = new Date().toISOString();
    // The step (the last init container) runs; the agent containers are taken to succeed.
    await this.setStatus(pod, 'Pending', startTime, { running: { startedAt: startTime } });
    if (behavior.outcome === 'run') return;
    await new Promise((r) => setTimeout(r, behavior.afterMs ?? 0));
    const finishedAt = new Date().toISOString();
    const exitCode = behavior.outcome === 'succeed' ? 0 : behavior.exitCode ?? 1;
    const message = behavior.outcome === 'fail' && behavior.message ? { message: behavior.message } : {};
    const terminated = { terminated: { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: startTime, finishedAt, ...message } };
    await this.setStatus(pod, exitCode === 0 ? 'Succeeded' : 'Failed', startTime, terminated);
    record.finishedAt = Date.now();
  }

  private async setStatus(pod: Pod, phase: string, startTime: string, stepState: Record<string, unknown>): Promise<void> {
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
      },
    }, 'status');
  }
}
