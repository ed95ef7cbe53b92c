// The step cache: earlier successful executions of the same step (same cache key, same
// namespace), found in the PipelineRuns of the informer cache through their `cacheKey` index.
// The planner asks it synchronously (view); the shell then checks once that the artifacts of the
// results the plan reused still exist (verify) and claims the keys the plan will run (claim),
// so that two identical steps starting at once do not both run: the second waits for the first.
import type { StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import type { Clock } from '../../runtime/clock.ts';
import { inNamespace, type RunCache } from '../indexes.ts';
import { maxAgeMs } from './cache-key.ts';
import type { CacheLookup, CacheView, StepLaunch } from './planner.ts';
import type { Reused } from './transitions.ts';

/** How long a claim holds if the claiming run's status never shows the key (its write was lost). */
const CLAIM_MS = 60_000;
const MAX_CLAIMS = 1000;

export class StepCache {
  private readonly runs: RunCache;
  private readonly store: ArtifactStore;
  private readonly clock: Clock;
  /** Results whose artifacts were found deleted (Reused.origin): never offered again. */
  private readonly invalid = new Set<string>();
  /** Keys a run is about to run, until its status (with the key) reaches the cache. */
  private readonly claims = new Map<string, { run: string; step: string; until: number }>();

  constructor(runs: RunCache, store: ArtifactStore, clock: Clock) {
    this.runs = runs;
    this.store = store;
    this.clock = clock;
  }

  /** What run `self` in `namespace` sees of the cache, for one planning pass. */
  view(namespace: string, self: string): CacheView {
    return { lookup: (key, step) => this.lookup(namespace, self, key, step) };
  }

  private lookup(namespace: string, self: string, key: string, step: StepSpec): CacheLookup {
    const now = this.clock.now().getTime();
    const results = this.runs.byIndex('cacheKey', inNamespace(namespace, key))
      .filter((r) => r.metadata.name !== self)
      .flatMap((run) => (run.status?.steps ?? []).filter((s) => s.cacheKey === key).map((s) => ({ run, step: s })))
      .filter(({ run, step: s }) => !this.invalid.has(`${run.metadata.uid}/${s.name}`));
    const newest = results
      .filter(({ step: s }) => (s.phase === 'Succeeded' || s.phase === 'Cached') && now - Date.parse(s.finishedAt ?? '') <= maxAgeMs(step))
      .sort((a, b) => Date.parse(b.step.finishedAt ?? '') - Date.parse(a.step.finishedAt ?? ''))[0];
    if (newest) {
      const { run, step: s } = newest;
      return {
        hit: { run: s.cachedFrom ?? run.metadata.name, outputs: s.outputs ?? [], origin: `${run.metadata.uid}/${s.name}`, ...reusedExtras(s) },
      };
    }
    const running = results.find(({ step: s }) => s.phase === 'Running');
    if (running) return { runningIn: running.run.metadata.name };
    const claim = this.claims.get(inNamespace(namespace, key));
    if (claim && claim.run !== self && claim.until > now && this.stillRunning(namespace, claim)) return { runningIn: claim.run };
    return { miss: true };
  }

  /**
   * Claims the keys of the steps a plan starts. Called in the same synchronous stretch as the
   * planning (no await between), so two runs planned at once cannot both miss the same key.
   */
  claim(namespace: string, self: string, launches: StepLaunch[]): void {
    const until = this.clock.now().getTime() + CLAIM_MS;
    if (this.claims.size > MAX_CLAIMS) this.prune();
    for (const launch of launches) {
      if (launch.cache && launch.attempt === 1) this.claims.set(inNamespace(namespace, launch.cache.key), { run: self, step: launch.step.name, until });
    }
  }

  /** Takes back the claims `claim` made for these launches (their plan was discarded). */
  release(namespace: string, self: string, launches: StepLaunch[]): void {
    for (const launch of launches) {
      const key = launch.cache && inNamespace(namespace, launch.cache.key);
      if (key && this.claims.get(key)?.run === self) this.claims.delete(key);
    }
  }

  /**
   * Checks that every artifact of the results a plan reused still exists; returns the steps
   * whose result is gone, and never offers that result again.
   */
  async verify(reused: Map<string, Reused>): Promise<string[]> {
    const checks = await Promise.all([...reused].map(async ([step, result]) => {
      const uris = [...result.outputs.map((o) => o.uri), ...(result.collection ? [result.collection.uri] : [])];
      const present = await Promise.all(uris.map((uri) => this.store.exists(uri)));
      return present.every(Boolean) ? undefined : { step, origin: result.origin };
    }));
    const stale = checks.filter((c) => c !== undefined);
    for (const { origin } of stale) this.invalid.add(origin);
    return stale.map((c) => c.step);
  }

  /** A claim holds until the claiming run's status shows its step finished (or the run is gone). */
  private stillRunning(namespace: string, claim: { run: string; step: string }): boolean {
    const run = this.runs.get(inNamespace(namespace, claim.run));
    const phase = run?.status?.steps?.find((s) => s.name === claim.step)?.phase;
    return run !== undefined && (phase === undefined || phase === 'Pending' || phase === 'Running');
  }

  /** Forgets expired claims (when many have piled up). */
  prune(): void {
    const now = this.clock.now().getTime();
    for (const [key, claim] of this.claims) if (claim.until <= now) this.claims.delete(key);
  }
}

/** What a reused step carries besides its outputs: metrics, results, a forEach step's collection. */
export const reusedExtras = (s: StepStatus): Pick<Reused, 'metrics' | 'results' | 'collection'> => ({
  ...(s.metrics ? { metrics: s.metrics } : {}),
  ...(s.results ? { results: s.results } : {}),
  ...(s.collection ? { collection: s.collection } : {}),
});
