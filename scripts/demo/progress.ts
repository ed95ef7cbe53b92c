// Live progress of PipelineRuns for a terminal: one line whenever a step changes phase (started,
// finished with its duration, served from cache, retried, skipped, failed; a forEach step also
// as its items finish) and when a run finishes or waits on something. Driven by a watch (the operator's informer), not by polling.
import type { PipelineRun, StepStatus } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { FINAL_RUN_PHASES } from '../../operator/api/v1alpha1/labels.ts';
import type { KubeClient } from '../../operator/kube/client.ts';
import { PIPELINE_RUNS } from '../../operator/kube/resources.ts';
import { silentLogger } from '../../operator/observability/logger.ts';
import { Informer } from '../../operator/runtime/informer.ts';

export class RunProgress {
  private readonly informer: Informer<PipelineRun>;
  private readonly say: (line: string) => void;
  /** Per followed run: the last state printed for each step, and for the run itself. */
  private readonly seen = new Map<string, Map<string, string>>();
  private readonly waiters: Array<() => void> = [];
  private readonly namespace: string;

  constructor(client: KubeClient, namespace: string, say: (line: string) => void) {
    this.say = say;
    this.namespace = namespace;
    this.informer = new Informer<PipelineRun>(client, { resource: PIPELINE_RUNS, namespace }, silentLogger);
    const onChange = (run: PipelineRun): void => {
      if (this.seen.has(run.metadata.name)) this.report(run);
      for (const wake of this.waiters.splice(0)) wake();
    };
    this.informer.addHandlers({ onAdd: onChange, onUpdate: (_, run) => onChange(run) });
  }

  async start(): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync();
  }

  follow(name: string): void {
    if (!this.seen.has(name)) this.seen.set(name, new Map());
    const run = this.get(name);
    if (run) this.report(run);
  }

  /** Resolves with the runs once every one has reached a final phase. */
  async finished(names: string[], timeoutMs: number): Promise<PipelineRun[]> {
    for (const name of names) this.follow(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const runs = names.map((name) => this.get(name));
      if (runs.every((r) => r !== undefined && FINAL_RUN_PHASES.has(r.status?.phase ?? ''))) return runs as PipelineRun[];
      const left = deadline - Date.now();
      if (left <= 0) {
        const state = runs.map((r, i) => `${names[i]}: ${r?.status?.phase ?? 'not found'} ${r?.status?.progress ?? ''}`).join(', ');
        throw new Error(`runs not finished after ${timeoutMs / 1000} s (${state})`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 5_000));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  get(name: string): PipelineRun | undefined {
    return this.informer.get(`${this.namespace}/${name}`);
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  private report(run: PipelineRun): void {
    const seen = this.seen.get(run.metadata.name)!;
    const name = run.metadata.name.padEnd(26);
    const progress = (run.status?.progress ?? '').padStart(5);
    for (const step of run.status?.steps ?? []) {
      const state = describeStep(step);
      if (state === undefined || seen.get(`step/${step.name}`) === state) continue;
      seen.set(`step/${step.name}`, state);
      this.say(`${name}  ${progress}  ${step.name.padEnd(10)} ${state}`);
    }
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    const phase = run.status?.phase ?? 'Pending';
    const runState = FINAL_RUN_PHASES.has(phase) || (phase === 'Pending' && condition?.message)
      ? `${phase}: ${condition?.message ?? ''}` : undefined;
    if (runState !== undefined && seen.get('run') !== runState) {
      seen.set('run', runState);
      this.say(`${name}  ${progress}  ${(phase === 'Pending' ? 'waiting' : 'run').padEnd(10)} ${runState}`);
    }
  }
}

function describeStep(step: StepStatus): string | undefined {
  switch (step.phase) {
    case 'Running':
      // A forEach step: one line each time an item starts or ends (its status holds counts only).
      if (step.items) return `Running: ${step.items.succeeded + step.items.failed}/${step.items.total} items done, ${step.items.running} running${step.items.failed > 0 ? `, ${step.items.failed} failed` : ''}`;
      return `Running${(step.attempts ?? 1) > 1 ? ` (attempt ${step.attempts})` : ''} in ${step.podName ?? 'its Pod'}`;
    case 'Succeeded': {
      const seconds = step.startedAt && step.finishedAt ? (Date.parse(step.finishedAt) - Date.parse(step.startedAt)) / 1000 : undefined;
      const metrics = Object.entries(step.metrics ?? {}).map(([k, v]) => `${k}=${Number(v.toFixed(4))}`).join(' ');
      const items = step.items ? `  ${step.items.succeeded}/${step.items.total} items succeeded` : '';
      return `Succeeded${seconds === undefined ? '' : ` in ${seconds} s`}${items}${metrics ? `  ${metrics}` : ''}`;
    }
    case 'Cached':
      return `Cached (outputs of ${step.cachedFrom ?? 'an earlier run'}, no Pod)`;
    case 'Retrying':
      return `Retrying: ${step.message ?? step.reason ?? ''}`;
    case 'Failed':
    case 'Cancelled':
    case 'Skipped':
      return `${step.phase}${step.message ? `: ${step.message}` : ''}`;
    default:
      return undefined; // Pending: nothing to tell until it starts
  }
}
