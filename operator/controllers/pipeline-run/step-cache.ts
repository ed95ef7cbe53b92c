// The step cache: finds an earlier successful execution of the same step (same cache key, same
// namespace) to reuse, from the PipelineRuns in the informer cache (indexed by cache key), and
// checks its outputs still exist in the artifact store. It also keeps two identical steps that
// start at once from both running: the second waits for the first.
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import type { Cache } from '../../runtime/cache.ts';
import type { Clock } from '../../runtime/clock.ts';
import type { Reused } from './plan.ts';

export type CacheLookup = { hit: Reused } | { runningIn: string } | { miss: true };

/** Index values of a run for the cache: its steps that ran (or run) with a cache key. */
export function cacheIndexOf(run: PipelineRun): string[] {
  return (run.status?.steps ?? [])
    .filter((s) => s.cacheKey && (s.phase === 'Succeeded' || s.phase === 'Cached' || s.phase === 'Running'))
    .map((s) => `cache:${run.metadata.namespace}/${s.cacheKey}`);
}

const CLAIM_MS = 60_000;

export class StepCache {
  private readonly runs: Cache<PipelineRun>;
  private readonly store: ArtifactStore;
  private readonly clock: Clock;
  /** Results whose artifacts were found deleted: `<run uid>/<step>`. */
  private readonly invalid = new Set<string>();
  /** Keys a run is about to run, until its status (with the key) reaches the cache. */
  private readonly claims = new Map<string, { run: string; step: string; until: number }>();

  constructor(runs: Cache<PipelineRun>, store: ArtifactStore, clock: Clock) {
    this.runs = runs;
    this.store = store;
    this.clock = clock;
  }

  async lookup(namespace: string, key: string, self: string, step: string, maxAgeMs: number): Promise<CacheLookup> {
    const now = this.clock.now().getTime();
    const candidates = this.runs.byIndex(`cache:${namespace}/${key}`).filter((r) => r.metadata.name !== self);
    const results = candidates
      .flatMap((run) => (run.status?.steps ?? []).filter((s) => s.cacheKey === key).map((step) => ({ run, step })))
      .filter(({ run, step }) => !this.invalid.has(`${run.metadata.uid}/${step.name}`));
    const done = results
      .filter(({ step }) => (step.phase === 'Succeeded' || step.phase === 'Cached') && now - Date.parse(step.finishedAt ?? '') <= maxAgeMs)
      .sort((a, b) => Date.parse(b.step.finishedAt ?? '') - Date.parse(a.step.finishedAt ?? ''));
    for (const { run, step } of done) {
      const outputs = step.outputs ?? [];
      const present = await Promise.all(outputs.map((o) => this.store.exists(o.uri)));
      if (present.every(Boolean)) {
        return { hit: { run: step.cachedFrom ?? run.metadata.name, outputs, ...(step.metrics ? { metrics: step.metrics } : {}) } };
      }
      // An artifact was deleted from the store: this result can never be reused.
      this.invalid.add(`${run.metadata.uid}/${step.name}`);
    }
    const running = results.find(({ step }) => step.phase === 'Running');
    if (running) return { runningIn: running.run.metadata.name };
    if (this.claims.size > 1000) this.prune();
    const claim = this.claims.get(`${namespace}/${key}`);
    if (claim && claim.run !== self && claim.until > now && this.stillRunning(namespace, claim)) return { runningIn: claim.run };
    this.claims.set(`${namespace}/${key}`, { run: self, step, until: now + CLAIM_MS });
    return { miss: true };
  }

  /** A claim holds until the claiming run's status shows its step finished (or the run is gone). */
  private stillRunning(namespace: string, claim: { run: string; step: string }): boolean {
    const run = this.runs.get(`${namespace}/${claim.run}`);
    const phase = run?.status?.steps?.find((s) => s.name === claim.step)?.phase;
    return run !== undefined && (phase === undefined || phase === 'Pending' || phase === 'Running');
  }

  /** Forgets expired claims (when many have piled up). */
  prune(): void {
    const now = this.clock.now().getTime();
    for (const [key, claim] of this.claims) if (claim.until <= now) this.claims.delete(key);
  }
}
