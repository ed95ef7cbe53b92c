// What Ferry records in its metadata store: runs, step executions, artifacts, lineage edges
// (an execution consumed or produced an artifact), model versions and stage transitions.
// Records are derived from the Kubernetes objects (the source of truth) and written
// idempotently, so writing the same records twice stores them once.

export interface RunRecord {
  uid: string;
  namespace: string;
  name: string;
  pipeline: string;
  pipelineSpecHash: string;
  configurationUri: string;
  configurationDigest: string;
  phase: string;
  startedAt?: string;
  finishedAt?: string;
  /** Configuration URI this run reproduced or resumed, if any. */
  reproducedFrom?: string;
}

export interface ExecutionRecord {
  runUid: string;
  step: string;
  /** Succeeded, Failed, Cached, Cancelled, Skipped, Running, … */
  phase: string;
  attempts: number;
  podName?: string;
  cacheKey?: string;
  /** The components the cache key was hashed from, to explain a miss later. */
  cacheComponents?: Record<string, string>;
  /** For a cached execution: the run whose outputs it reused. */
  cachedFrom?: string;
  startedAt?: string;
  finishedAt?: string;
  metrics?: Record<string, number>;
  /** Results the step wrote, as canonical text. */
  results?: Record<string, string>;
  /** A forEach step's items: where their outputs and results are, and how many did what. */
  collection?: { uri: string; digest: string };
  items?: { total: number; succeeded: number; failed: number };
}

export interface ArtifactRecord {
  namespace: string;
  uri: string;
  digest: string;
  /** dataset, model, metrics, file, or collection (a forEach step's items) */
  type: string;
  size?: number;
}

export interface LineageEdge {
  runUid: string;
  step: string;
  direction: 'consumed' | 'produced';
  /** The input or output name in the step. */
  name: string;
  artifactUri: string;
  artifactDigest: string;
}

export interface RunRecords {
  run: RunRecord;
  executions: ExecutionRecord[];
  artifacts: ArtifactRecord[];
  edges: LineageEdge[];
}

export interface ModelVersionRecord {
  namespace: string;
  model: string;
  version: number;
  artifactUri: string;
  artifactDigest: string;
  runUid?: string;
  runName?: string;
  step?: string;
  configurationDigest?: string;
  metrics: Record<string, number>;
  stage: string;
}

export interface StageTransitionRecord {
  namespace: string;
  model: string;
  version: number;
  from: string;
  to: string;
  at: string;
  by: string;
  reason: string;
}

/** Which run, configuration and datasets produced a model version. */
export interface ModelProvenance {
  model: string;
  version: number;
  artifactDigest: string;
  run: { uid: string; name: string; pipeline: string; configurationUri: string; configurationDigest: string };
  step: string;
  /** Artifacts of type dataset upstream of the model, through any number of steps. */
  datasets: Array<{ uri: string; digest: string; producedBy?: { run: string; step: string } }>;
}

export interface ExplainCacheMissOptions {
  /**
   * Leave out this run's own executions: once the current run is recorded, its own execution of
   * the step would otherwise be "the nearest" and explain nothing.
   */
  excludeRunUid?: string;
}

export interface NextModelVersionOptions {
  /**
   * An idempotency key, e.g. `<run uid>/<step>/<output>`: the same claim gets the same number
   * again, so a reconcile retried before it sees the ModelVersion it created takes no second one.
   */
  claim?: string;
  /**
   * The lowest acceptable number, e.g. 1 + the highest ModelVersion that exists: the objects are the
   * source of truth, so a database restored from an old backup still never reissues a number.
   */
  atLeast?: number;
}

/** What an endpoint serves from a moment on: a version, or nothing (scaled to zero, removed). */
export interface EndpointServingRecord {
  namespace: string;
  /** The endpoint's name (the serving Pipeline's name). */
  endpoint: string;
  /** ISO 8601 time from which this holds (when the rollout completed, or when it stopped serving). */
  at: string;
  /** The version live from `at`; absent when nothing is live from then on. */
  live?: { model: string; version: number; artifactDigest: string };
}

export interface EndpointServingPeriod { model: string; version: number; artifactDigest: string; from: string; until?: string }

export interface MetadataStore {
  /** Creates or upgrades the schema; safe when several replicas start at once. */
  migrate(): Promise<void>;
  /** Writes a run and everything under it in one transaction; idempotent. */
  recordRun(records: RunRecords): Promise<void>;
  recordModelVersion(record: ModelVersionRecord): Promise<void>;
  /** Idempotent by (namespace, model, version, to, at). */
  recordStageTransition(record: StageTransitionRecord): Promise<void>;
  /** Idempotent by (namespace, endpoint, at): ends the period open at `at` and, with `live`, opens the next one. */
  recordEndpointServing(record: EndpointServingRecord): Promise<void>;
  /** The version live at the endpoint at that moment, if any. */
  servedAt(namespace: string, endpoint: string, at: string): Promise<EndpointServingPeriod | undefined>;
  /** The endpoint's periods, oldest first, at most `limit` (the newest ones). */
  servingHistory(namespace: string, endpoint: string, limit?: number): Promise<EndpointServingPeriod[]>;
  /** Which run/configuration/datasets produced `model` version `version`; undefined if unknown. */
  modelProvenance(namespace: string, model: string, version: number): Promise<ModelProvenance | undefined>;
  /** Model versions trained (directly or through intermediate steps) from the artifact with this digest. */
  modelsTrainedFrom(namespace: string, artifactDigest: string): Promise<Array<{ model: string; version: number }>>;
  /**
   * The most recent earlier execution of the same pipeline step in the namespace, and which of
   * its cache key components differ from `components` (names only), to explain a cache miss.
   */
  explainCacheMiss(
    namespace: string, pipeline: string, step: string, components: Record<string, string>,
    options?: ExplainCacheMissOptions,
  ): Promise<{ run: string; differing: string[] } | undefined>;
  /**
   * Issues the next version number of `model` in `namespace` (1, 2, 3, …), never the same number
   * twice, also across concurrent callers and replicas. Numbers may be skipped, never reused.
   */
  nextModelVersion(namespace: string, model: string, options?: NextModelVersionOptions): Promise<number>;
  /** Whether the last operation reached the database (for /readyz and metrics). */
  healthy(): boolean;
  /**
   * Calls `listener` each time the database answers again after it did not (also the first time
   * it answers): callers that skipped writes while it was down replay them then.
   */
  onReachable(listener: () => void): void;
  close(): Promise<void>;
}
