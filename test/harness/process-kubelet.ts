// Plays the kubelet by running a step Pod's containers as local processes, in order (init
// containers, then the main container), with the env and args the Pod spec gives them. The
// Pod's /ferry emptyDir becomes a temp directory: "/ferry" in env values, commands and args is
// rewritten to it. Agent containers (the operator's image) run `node operator/main.ts`. Pod
// status is written like a kubelet would: phases, exit codes and termination messages.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { KubeClient } from '../../operator/kube/client.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PODS } from '../../operator/kube/resources.ts';

const ROOT = join(import.meta.dirname, '..', '..');

interface Terminated {
  name: string;
  exitCode: number;
  message: string;
  startedAt: string;
  finishedAt: string;
}

export interface ProcessKubeletOptions {
  /** The image of agent containers, run as `node operator/main.ts <args>`. */
  agentImage: string;
  /** Extra environment for every process (e.g. the GCS emulator endpoint). */
  env?: Record<string, string>;
}

export class ProcessKubelet {
  readonly ran: string[] = [];
  private readonly client: KubeClient;
  private readonly namespace: string;
  private readonly options: ProcessKubeletOptions;
  private readonly seen = new Set<string>();
  private readonly work = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private dirs: string[] = [];
  /** The process each Pod runs now: killed when its Pod is deleted, as a kubelet would. */
  private readonly running = new Map<string, ChildProcess>();

  constructor(client: KubeClient, namespace: string, options: ProcessKubeletOptions) {
    this.client = client;
    this.namespace = namespace;
    this.options = options;
  }

  start(): this {
    this.timer = setInterval(() => void this.tick().catch(() => undefined), 150);
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.work]);
    await Promise.all(this.dirs.map((d) => rm(d, { recursive: true, force: true })));
  }

  private async tick(): Promise<void> {
    const { items } = await this.client.list<Pod>(PODS, this.namespace);
    const live = new Set(items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.metadata.name));
    for (const [name, child] of this.running) if (!live.has(name)) child.kill('SIGKILL');
    for (const pod of items) {
      if (this.seen.has(pod.metadata.name) || pod.metadata.deletionTimestamp || pod.status?.startTime) continue;
      this.seen.add(pod.metadata.name);
      const job = this.runPod(pod).catch(() => undefined);
      this.work.add(job);
      void job.finally(() => this.work.delete(job));
    }
  }

  private async runPod(pod: Pod): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-pod-'));
    this.dirs.push(dir);
    this.ran.push(pod.metadata.name);
    const startTime = new Date().toISOString();
    const init: Terminated[] = [];
    await this.patch(pod, { phase: 'Pending', startTime });
    for (const container of pod.spec?.initContainers ?? []) {
      // Says the container runs, as a kubelet does: the planner times a step from then.
      const since = new Date().toISOString();
      await this.patch(pod, { phase: 'Pending', startTime, initContainerStatuses: [...init.map(terminatedState), runningState(container.name, since)] });
      const result = await this.runContainer(pod, container, dir);
      init.push(result);
      if (result.exitCode !== 0) return this.finish(pod, 'Failed', startTime, init, []);
    }
    await this.patch(pod, { phase: 'Running', startTime });
    const main: Terminated[] = [];
    for (const container of pod.spec?.containers ?? []) main.push(await this.runContainer(pod, container, dir));
    const failed = main.some((c) => c.exitCode !== 0);
    await this.finish(pod, failed ? 'Failed' : 'Succeeded', startTime, init, main);
  }

  private async runContainer(pod: Pod, container: IContainer, dir: string): Promise<Terminated> {
    // Only the path /ferry (not gs://ferry-bucket, /ferry-x or a/ferry).
    const rewrite = (text: string) => text.replace(/(?<![\w/.-])\/ferry(?=\/|$|[\s'"`;)])/g, join(dir, 'ferry'));
    const terminationLog = join(dir, `termination-${container.name}`);
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...this.options.env };
    for (const e of container.env ?? []) {
      if (e.value !== undefined) env[e.name] = rewrite(e.value);
      else if (e.valueFrom?.secretKeyRef) env[e.name] = await this.secretValue(e.valueFrom.secretKeyRef.name ?? '', e.valueFrom.secretKeyRef.key);
    }
    env.FERRY_TERMINATION_LOG = terminationLog;
    const isAgent = container.image === this.options.agentImage && !container.command;
    const argv = isAgent
      ? [process.execPath, join(ROOT, 'operator', 'main.ts'), ...(container.args ?? [])]
      : [...(container.command ?? []), ...(container.args ?? [])].map(rewrite);
    const startedAt = new Date().toISOString();
    let stderr = '';
    const exitCode = await new Promise<number>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { env, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      this.running.set(pod.metadata.name, child);
      child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4096)));
      child.on('error', () => resolve(127));
      child.on('exit', (code) => resolve(code ?? 137));
    }).finally(() => this.running.delete(pod.metadata.name));
    // Like terminationMessagePolicy FallbackToLogsOnError: the log tail when a failure wrote no message.
    const written = await readFile(terminationLog, 'utf8').catch(() => '');
    const message = written || (exitCode !== 0 ? stderr.trim().split('\n').slice(-5).join('\n') : '');
    return { name: container.name, exitCode, message, startedAt, finishedAt: new Date().toISOString() };
  }

  private async secretValue(name: string, key: string): Promise<string> {
    const secret = await this.client.get<{ data?: Record<string, string> }>({ group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true }, this.namespace, name);
    return Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
  }

  private async finish(pod: Pod, phase: 'Succeeded' | 'Failed', startTime: string, init: Terminated[], main: Terminated[]): Promise<void> {
    await this.patch(pod, { phase, startTime, initContainerStatuses: init.map(terminatedState), containerStatuses: main.map(terminatedState) });
  }

  private async patch(pod: Pod, status: Record<string, unknown>): Promise<void> {
    await this.client.mergePatch(PODS, this.namespace, pod.metadata.name, { status }, 'status');
  }
}

const terminatedState = (t: Terminated) => ({
  name: t.name, image: '', imageID: '', ready: false, restartCount: 0,
  state: { terminated: { exitCode: t.exitCode, reason: t.exitCode === 0 ? 'Completed' : 'Error', message: t.message, startedAt: t.startedAt, finishedAt: t.finishedAt } },
});

const runningState = (name: string, startedAt: string) => ({ name, image: '', imageID: '', ready: false, restartCount: 0, state: { running: { startedAt } } });
