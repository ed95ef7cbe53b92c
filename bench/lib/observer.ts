// Watches one namespace's Pods and runs (PipelineRuns or Workflows) from the bench process and
// stamps each event with this process's clock in milliseconds: the API's own timestamps have
// one-second precision, too coarse for a delay of tens of milliseconds. Both ends of a delay
// come through the same kind of watch, so the watch's own latency mostly cancels out.
import type { KubeObject } from '../../operator/api/v1alpha1/common.ts';
import type { KubeClient, WatchEvent } from '../../operator/kube/client.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PODS, type Resource } from '../../operator/kube/resources.ts';

export type Outcome = 'Succeeded' | 'Failed';

export interface PodRecord {
  name: string;
  run: string;
  step: string;
  /** When the watch first saw the Pod (ms, this process's clock). */
  seenMs: number;
  /** metadata.creationTimestamp (ms, second precision). */
  createdApiMs: number;
  /** When the watch first saw it Succeeded or Failed. */
  endedMs?: number;
  /** The latest terminated.finishedAt of its containers (ms, second precision). */
  endedApiMs?: number;
  phase?: Outcome;
}

export interface RunRecord {
  name: string;
  seenMs: number;
  endedMs?: number;
  outcome?: Outcome;
}

export interface ObserverAdapter {
  runResource: Resource;
  /** The run and step a Pod belongs to; undefined for Pods that are not steps. */
  stepOf(pod: Pod): { run: string; step: string } | undefined;
  outcomeOf(run: KubeObject): Outcome | undefined;
}

export class Observer {
  readonly pods = new Map<string, PodRecord>();
  readonly runs = new Map<string, RunRecord>();
  readonly namespace: string;
  private readonly client: KubeClient;
  private readonly adapter: ObserverAdapter;
  private readonly aborts: AbortController[] = [];
  private stopped = false;
  private waiters: Array<() => void> = [];

  constructor(client: KubeClient, namespace: string, adapter: ObserverAdapter) {
    this.client = client;
    this.namespace = namespace;
    this.adapter = adapter;
  }

  async start(): Promise<void> {
    await Promise.all([
      this.follow<Pod>(PODS, (pod, now) => this.onPod(pod, now)),
      this.follow<KubeObject>(this.adapter.runResource, (run, now) => this.onRun(run, now)),
    ]);
  }

  stop(): void {
    this.stopped = true;
    for (const a of this.aborts) a.abort();
  }

  /** Resolves when `done()` holds, re-checked on every event; rejects after timeoutMs. */
  until(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`));
      }, timeoutMs);
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  /** Finished runs among these names. */
  finished(names: Iterable<string>): number {
    let n = 0;
    for (const name of names) if (this.runs.get(name)?.outcome) n++;
    return n;
  }

  /** Re-checks every waiter's condition now (for conditions on more than the watched objects). */
  recheck(): void {
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private onPod(pod: Pod, now: number): void {
    const step = this.adapter.stepOf(pod);
    if (!step) return;
    const name = pod.metadata.name;
    let record = this.pods.get(name);
    if (!record) {
      record = { name, ...step, seenMs: now, createdApiMs: Date.parse(pod.metadata.creationTimestamp ?? '') };
      this.pods.set(name, record);
    }
    const phase = pod.status?.phase;
    if (record.endedMs === undefined && (phase === 'Succeeded' || phase === 'Failed')) {
      record.endedMs = now;
      record.phase = phase;
      const finished = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]
        .map((c) => Date.parse(c.state?.terminated?.finishedAt ?? ''))
        .filter((t) => Number.isFinite(t));
      if (finished.length > 0) record.endedApiMs = Math.max(...finished);
      this.notify();
    }
  }

  private onRun(run: KubeObject, now: number): void {
    const name = run.metadata.name;
    let record = this.runs.get(name);
    if (!record) {
      record = { name, seenMs: now };
      this.runs.set(name, record);
    }
    const outcome = this.adapter.outcomeOf(run);
    if (outcome && record.outcome === undefined) {
      record.outcome = outcome;
      record.endedMs = now;
      this.notify();
    }
  }

  /** List, then watch from the list's resourceVersion for as long as the bench runs, re-listing on 410. */
  private async follow<T extends KubeObject>(resource: Resource, handle: (object: T, now: number) => void): Promise<void> {
    const list = async () => {
      const { items, resourceVersion } = await this.client.list<T>(resource, this.namespace);
      const now = Date.now();
      for (const item of items) handle(item, now);
      return resourceVersion;
    };
    let resourceVersion = await list();
    const loop = async () => {
      while (!this.stopped) {
        const ended = await new Promise<unknown>((resolve) => {
          const abort = this.client.watch<T>(
            resource,
            this.namespace,
            { resourceVersion, timeoutSeconds: 3600, idleTimeoutMs: 3_600_000 },
            (event: WatchEvent<T>) => {
              const now = Date.now();
              if (event.type === 'ERROR') {
                const status = event.object as unknown as { code?: number };
                if (status.code === 410) resourceVersion = '';
                return;
              }
              const rv = event.object.metadata?.resourceVersion;
              if (rv) resourceVersion = rv;
              if (event.type === 'ADDED' || event.type === 'MODIFIED') handle(event.object, now);
            },
            resolve,
          );
          void abort.then((a) => this.aborts.push(a), resolve);
        });
        if (this.stopped) return;
        if (ended) await new Promise((r) => setTimeout(r, 500));
        if (!resourceVersion) resourceVersion = await list().catch(() => '');
      }
    };
    void loop().catch((err: unknown) => process.stderr.write(`bench watch of ${resource.plural} ended: ${String(err)}\n`));
  }
}
