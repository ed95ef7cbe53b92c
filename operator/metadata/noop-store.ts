// The MetadataStore used when no database is configured: records nothing, lineage queries find
// nothing, and it is always healthy. Runs, caching by status and the registry's objects still work;
// only history and lineage beyond the Kubernetes objects are missing.
import type {
  EndpointServingPeriod, EndpointServingRecord, ExplainCacheMissOptions, MetadataStore, ModelProvenance, ModelVersionRecord, NextModelVersionOptions, RunRecords,
  StageTransitionRecord,
} from './records.ts';

export class NoopMetadataStore implements MetadataStore {
  // Version numbers issued by this process. Without a database they cannot outlive it, so callers
  // pass `atLeast` (1 + the highest ModelVersion that exists) and the objects keep numbers unique.
  private readonly lastVersion = new Map<string, number>();
  private readonly claims = new Map<string, number>();

  async migrate(): Promise<void> {}
  async recordRun(_records: RunRecords): Promise<void> {}
  async recordModelVersion(_record: ModelVersionRecord): Promise<void> {}
  async recordStageTransition(_record: StageTransitionRecord): Promise<void> {}
  async recordEndpointServing(_record: EndpointServingRecord): Promise<void> {}

  async servedAt(_namespace: string, _endpoint: string, _at: string): Promise<EndpointServingPeriod | undefined> {
    return undefined;
  }

  async servingHistory(_namespace: string, _endpoint: string, _limit?: number): Promise<EndpointServingPeriod[]> {
    return [];
  }

  async modelProvenance(_namespace: string, _model: string, _version: number): Promise<ModelProvenance | undefined> {
    return undefined;
  }

  async modelsTrainedFrom(_namespace: string, _artifactDigest: string): Promise<Array<{ model: string; version: number }>> {
    return [];
  }

  async explainCacheMiss(
    _namespace: string, _pipeline: string, _step: string, _components: Record<string, string>, _options?: ExplainCacheMissOptions,
  ): Promise<{ run: string; differing: string[] } | undefined> {
    return undefined;
  }

  async nextModelVersion(namespace: string, model: string, options: NextModelVersionOptions = {}): Promise<number> {
    const key = `${namespace}/${model}`;
    const claimKey = options.claim === undefined ? undefined : `${key}\n${options.claim}`;
    const claimed = claimKey === undefined ? undefined : this.claims.get(claimKey);
    if (claimed !== undefined) return claimed;
    const version = Math.max((this.lastVersion.get(key) ?? 0) + 1, options.atLeast ?? 1);
    this.lastVersion.set(key, version);
    if (claimKey !== undefined) this.claims.set(claimKey, version);
    return version;
  }

  healthy(): boolean {
    return true;
  }

  /** Never unreachable, so never reachable again. */
  onReachable(_listener: () => void): void {}

  async close(): Promise<void> {}
}
