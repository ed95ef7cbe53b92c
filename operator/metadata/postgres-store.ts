// The MetadataStore on PostgreSQL through a small pg.Pool: the operator's record of runs, step
// executions, artifacts, lineage and the model registry. Writes are idempotent upserts (a replayed
// record changes nothing, a more complete one fills in); lineage queries live in lineage.ts.
import pg from 'pg';
import type { Logger } from '../observability/logger.ts';
import { silentLogger } from '../observability/logger.ts';
import { InvalidRecordError, MetadataStoreError, reachedDatabase } from './errors.ts';
import * as lineage from './lineage.ts';
import { migrate, type MigrationResult } from './migrations.ts';
import type {
  EndpointServingPeriod, EndpointServingRecord, ExplainCacheMissOptions, MetadataStore, ModelProvenance, ModelVersionRecord, NextModelVersionOptions,
  RunRecords, StageTransitionRecord,
} from './records.ts';

export interface PostgresMetadataStoreOptions {
  /** Connections in the pool; the operator's writes are small and few. Default 4. */
  maxConnections?: number;
  /** Server-side limit per statement (statement_timeout). Default 15 s. */
  statementTimeoutMs?: number;
  /** How long to wait for a connection (new or from the pool). Default 5 s. */
  connectionTimeoutMs?: number;
  /** Idle connections are closed after this. Default 30 s. */
  idleTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  /** While unhealthy, how often to try a round trip, so healthy() recovers with no traffic. Default 5 s. */
  probeIntervalMs?: number;
  log?: Logger;
}

// A run or step in one of these phases is finished: a replayed older record must not move it back.
const TERMINAL_PHASES = ['Succeeded', 'Failed', 'Cancelled', 'Cached', 'Skipped'];
const TERMINAL_LIST = TERMINAL_PHASES.map((p) => `'${p}'`).join(', ');
const isTerminal = (row: string): string => `(${row}.finished_at IS NOT NULL OR ${row}.phase IN (${TERMINAL_LIST}))`;
const keepsTerminal = `${isTerminal('cur')} AND NOT ${isTerminal('EXCLUDED')}`;
const PHASE_MERGE = `CASE WHEN ${keepsTerminal} THEN cur.phase ELSE EXCLUDED.phase END`;
const FINISHED_MERGE = `CASE WHEN ${keepsTerminal} THEN cur.finished_at ELSE COALESCE(EXCLUDED.finished_at, cur.finished_at) END`;

/**
 * `DO UPDATE SET col = expr, … WHERE (cols) IS DISTINCT FROM (exprs)`: the WHERE makes a replay a
 * no-op (no new row version, updated_at unchanged). The conflicting row is aliased `cur`.
 */
function mergeOnConflict(merge: Record<string, string>): string {
  const cols = Object.keys(merge);
  const exprs = cols.map((c) => merge[c]);
  return `DO UPDATE SET ${cols.map((c, i) => `${c} = ${exprs[i]}`).join(', ')}, updated_at = now()
    WHERE (${cols.map((c) => `cur.${c}`).join(', ')}) IS DISTINCT FROM (${exprs.join(', ')})`;
}

// Immutable once known: identity, configuration, cache key. Mutable: phase, timing, attempts, pod.
const RUN_MERGE: Record<string, string> = {
  configuration_uri: `COALESCE(NULLIF(cur.configuration_uri, ''), EXCLUDED.configuration_uri)`,
  configuration_digest: `COALESCE(NULLIF(cur.configuration_digest, ''), EXCLUDED.configuration_digest)`,
  phase: PHASE_MERGE,
  started_at: 'COALESCE(cur.started_at, EXCLUDED.started_at)',
  finished_at: FINISHED_MERGE,
  reproduced_from: 'COALESCE(cur.reproduced_from, EXCLUDED.reproduced_from)',
};

const EXECUTION_MERGE: Record<string, string> = {
  phase: PHASE_MERGE,
  attempts: 'GREATEST(cur.attempts, EXCLUDED.attempts)',
  pod_name: 'COALESCE(EXCLUDED.pod_name, cur.pod_name)',
  cache_key: 'COALESCE(cur.cache_key, EXCLUDED.cache_key)',
  cache_components: 'COALESCE(cur.cache_components, EXCLUDED.cache_components)',
  cached_from: 'COALESCE(cur.cached_from, EXCLUDED.cached_from)',
  started_at: 'COALESCE(cur.started_at, EXCLUDED.started_at)',
  finished_at: FINISHED_MERGE,
  metrics: 'COALESCE(EXCLUDED.metrics, cur.metrics)',
  results: 'COALESCE(EXCLUDED.results, cur.results)',
  collection_uri: 'COALESCE(cur.collection_uri, EXCLUDED.collection_uri)',
  collection_digest: 'COALESCE(cur.collection_digest, EXCLUDED.collection_digest)',
  items: 'COALESCE(EXCLUDED.items, cur.items)',
};

// The stage follows the object (latest write wins); what produced the version never changes.
const MODEL_VERSION_MERGE: Record<string, string> = {
  stage: 'EXCLUDED.stage',
  run_uid: 'COALESCE(cur.run_uid, EXCLUDED.run_uid)',
  run_name: 'COALESCE(cur.run_name, EXCLUDED.run_name)',
  step: 'COALESCE(cur.step, EXCLUDED.step)',
  configuration_digest: 'COALESCE(cur.configuration_digest, EXCLUDED.configuration_digest)',
  metrics: `CASE WHEN cur.metrics = '{}'::jsonb THEN EXCLUDED.metrics ELSE cur.metrics END`,
};

export class PostgresMetadataStore implements MetadataStore {
  private readonly pool: pg.Pool;
  private readonly log: Logger;
  private ok = false;
  private lastFailure: string | undefined;
  /** Set once migrate() succeeded; until then every operation migrates first (lazily, shared). */
  private schemaReady = false;
  private migrating: Promise<unknown> | undefined;
  private closed: Promise<void> | undefined;
  private readonly probeIntervalMs: number;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly reachableListeners: Array<() => void> = [];

  constructor(connectionString: string, options: PostgresMetadataStoreOptions = {}) {
    this.log = options.log ?? silentLogger;
    this.probeIntervalMs = options.probeIntervalMs ?? 5_000;
    const statementTimeoutMs = options.statementTimeoutMs ?? 15_000;
    this.pool = new pg.Pool({
      connectionString,
      max: options.maxConnections ?? 4,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
      idleTimeoutMillis: options.idleTimeoutMs ?? 30_000,
      statement_timeout: statementTimeoutMs,
      // The client-side bound for a socket that stopped answering (no server to enforce the above).
      query_timeout: statementTimeoutMs + 5_000,
      application_name: options.applicationName ?? 'ferry-operator',
      keepAlive: true,
    });
    // NOTE: an idle client whose server went away emits 'error' on the pool, a checked-out one on
    // itself; unhandled, either would crash the process. Both only mark the store unhealthy (and
    // start probing): the next operation reports the failure to its caller.
    this.pool.on('error', (err) => this.markUnreachable(err));
    this.pool.on('connect', (client) => client.on('error', (err) => this.markUnreachable(err)));
  }

  healthy(): boolean {
    return this.ok;
  }

  onReachable(listener: () => void): void {
    this.reachableListeners.push(listener);
  }

  /** Why the store is unhealthy (the last failed round trip), for /readyz and conditions. */
  lastError(): string | undefined {
    return this.ok ? undefined : this.lastFailure ?? 'no round trip to the database yet';
  }

  /** A round trip (`SELECT 1`) that refreshes healthy(); for a readiness loop when nothing is written. */
  async ping(): Promise<boolean> {
    try {
      await this.op('ping', '', () => this.pool.query('SELECT 1'), { migrateFirst: false });
      return true;
    } catch {
      return false;
    }
  }

  async migrate(): Promise<void> {
    const result = await this.op('migrate', 'schema', () => migrate(this.pool), { migrateFirst: false });
    this.noteMigration(result);
  }

  async recordRun(records: RunRecords): Promise<void> {
    const { run } = records;
    await this.op('recordRun', `${run.namespace}/${run.name} (uid ${run.uid})`, () => this.transaction(async (db) => {
      const executions = dedupeExecutions(records);
      const artifacts = dedupeArtifacts(records);
      for (const edge of records.edges) {
        if (edge.runUid !== run.uid) throw new InvalidRecordError(`edge ${edge.step}/${edge.direction}/${edge.name} belongs to run uid ${edge.runUid}, not ${run.uid}`);
      }

      await db.query(
        `INSERT INTO pipelines (namespace, name, spec_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
        [run.namespace, run.pipeline, run.pipelineSpecHash],
      );
      await db.query(`
        INSERT INTO runs AS cur (uid, namespace, name, pipeline, pipeline_spec_hash, configuration_uri, configuration_digest,
                                 phase, started_at, finished_at, reproduced_from)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (uid) ${mergeOnConflict(RUN_MERGE)}`, [
        run.uid, run.namespace, run.name, run.pipeline, run.pipelineSpecHash, run.configurationUri, run.configurationDigest,
        run.phase, run.startedAt ?? null, run.finishedAt ?? null, run.reproducedFrom ?? null,
      ]);

      if (executions.length > 0) {
        await db.query(`
          INSERT INTO step_executions AS cur (run_uid, step, namespace, phase, attempts, pod_name, cache_key, cache_components,
                                              cached_from, started_at, finished_at, metrics, results, collection_uri, collection_digest, items)
          SELECT $1, x.step, $2, x.phase, x.attempts, x.pod_name, x.cache_key, x.cache_components,
                 x.cached_from, x.started_at, x.finished_at, x.metrics, x.results, x.collection_uri, x.collection_digest, x.items
          FROM jsonb_to_recordset($3::jsonb) AS x(step text, phase text, attempts integer, pod_name text, cache_key text,
               cache_components jsonb, cached_from text, started_at timestamptz, finished_at timestamptz, metrics jsonb,
               results jsonb, collection_uri text, collection_digest text, items jsonb)
          ON CONFLICT (run_uid, step) ${mergeOnConflict(EXECUTION_MERGE)}`, [
          run.uid, run.namespace, JSON.stringify(executions.map((e) => ({
            step: e.step, phase: e.phase, attempts: e.attempts, pod_name: e.podName, cache_key: e.cacheKey,
            cache_components: e.cacheComponents, cached_from: e.cachedFrom, started_at: e.startedAt,
            finished_at: e.finishedAt, metrics: e.metrics, results: e.results, collection_uri: e.collection?.uri,
            collection_digest: e.collection?.digest, items: e.items,
          }))),
        ]);
      }

      if (artifacts.length > 0) {
        // Artifacts are immutable; only a size learnt later is filled in.
        await db.query(`
          INSERT INTO artifacts AS cur (namespace, uri, digest, type, size_bytes)
          SELECT x.namespace, x.uri, x.digest, x.type, x.size_bytes
          FROM jsonb_to_recordset($1::jsonb) AS x(namespace text, uri text, digest text, type text, size_bytes bigint)
          ON CONFLICT (namespace, uri) DO UPDATE SET size_bytes = EXCLUDED.size_bytes
            WHERE cur.size_bytes IS NULL AND EXCLUDED.size_bytes IS NOT NULL`,
        [JSON.stringify(artifacts.map((a) => ({ namespace: a.namespace, uri: a.uri, digest: a.digest, type: a.type, size_bytes: a.size })))]);
        await checkDigests(db, artifacts.map((a) => ({ namespace: a.namespace, uri: a.uri, digest: a.digest })), 'artifact');
      }

      if (records.edges.length === 0) return;
      const { rows: executionIds } = await db.query<{ id: string; step: string; cached: boolean }>(
        `SELECT id, step, (phase = 'Cached' OR cached_from IS NOT NULL) AS cached FROM step_executions WHERE run_uid = $1`, [run.uid],
      );
      const executionByStep = new Map(executionIds.map((r) => [r.step, r]));
      // Edges name artifacts by URI in the run's namespace: from this record or recorded earlier.
      const uris = [...new Set(records.edges.map((e) => e.artifactUri))];
      const { rows: artifactRows } = await db.query<{ id: string; uri: string; digest: string }>(
        `SELECT id, uri, digest FROM artifacts WHERE namespace = $1 AND uri = ANY($2::text[])`, [run.namespace, uris],
      );
      const artifactByUri = new Map(artifactRows.map((r) => [r.uri, r]));
      const edges = records.edges.map((edge) => {
        const where = `edge ${edge.step}/${edge.direction}/${edge.name}`;
        const execution = executionByStep.get(edge.step);
        if (!execution) throw new InvalidRecordError(`${where}: step ${edge.step} has no execution in this record or recorded earlier`);
        const artifact = artifactByUri.get(edge.artifactUri);
        if (!artifact) throw new InvalidRecordError(`${where}: artifact ${edge.artifactUri} is not in this record's artifacts nor recorded earlier in namespace ${run.namespace}`);
        if (artifact.digest !== edge.artifactDigest) {
          throw new InvalidRecordError(`${where}: artifact ${edge.artifactUri} has digest ${artifact.digest}, the edge says ${edge.artifactDigest}`);
        }
        return { execution_id: execution.id, direction: edge.direction, name: edge.name, artifact_id: artifact.id, cached: execution.cached };
      });
      await db.query(`
        INSERT INTO lineage_edges (execution_id, direction, name, artifact_id)
        SELECT x.execution_id, x.direction, x.name, x.artifact_id
        FROM jsonb_to_recordset($1::jsonb) AS x(execution_id bigint, direction text, name text, artifact_id bigint)
        ON CONFLICT DO NOTHING`, [JSON.stringify(edges.map(({ cached: _, ...e }) => e))]);
      // The first execution that really produced an artifact stays its producer; a cache hit only
      // reuses it, so it never becomes one.
      const produced = edges.filter((e) => e.direction === 'produced' && !e.cached);
      if (produced.length > 0) {
        await db.query(`
          UPDATE artifacts a SET producer_execution_id = x.execution_id
          FROM (SELECT artifact_id, min(execution_id) AS execution_id
                FROM jsonb_to_recordset($1::jsonb) AS y(artifact_id bigint, execution_id bigint) GROUP BY artifact_id) x
          WHERE a.id = x.artifact_id AND a.producer_execution_id IS NULL`,
        [JSON.stringify(produced.map((e) => ({ artifact_id: e.artifact_id, execution_id: e.execution_id })))]);
      }
    }));
  }

  async recordModelVersion(record: ModelVersionRecord): Promise<void> {
    const subject = `${record.namespace}/${record.model} v${record.version}`;
    await this.op('recordModelVersion', subject, () => this.transaction(async (db) => {
      await db.query(`
        INSERT INTO model_versions AS cur (namespace, model, version, artifact_uri, artifact_digest, run_uid, run_name, step,
                                           configuration_digest, metrics, stage)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
        ON CONFLICT (namespace, model, version) ${mergeOnConflict(MODEL_VERSION_MERGE)}`, [
        record.namespace, record.model, record.version, record.artifactUri, record.artifactDigest, record.runUid ?? null,
        record.runName ?? null, record.step ?? null, record.configurationDigest ?? null, JSON.stringify(record.metrics), record.stage,
      ]);
      const { rows: [stored] } = await db.query<{ artifact_digest: string }>(
        `SELECT artifact_digest FROM model_versions WHERE namespace = $1 AND model = $2 AND version = $3`,
        [record.namespace, record.model, record.version],
      );
      if (stored && stored.artifact_digest !== record.artifactDigest) {
        throw new InvalidRecordError(`version ${record.version} is recorded with artifact digest ${stored.artifact_digest}, not ${record.artifactDigest}: model versions are immutable`);
      }
      // A version numbered elsewhere (restored objects, an outage) still moves the counter past it.
      await db.query(`
        INSERT INTO model_version_counters AS cur (namespace, model, last_version) VALUES ($1, $2, $3)
        ON CONFLICT (namespace, model) DO UPDATE SET last_version = EXCLUDED.last_version
          WHERE cur.last_version < EXCLUDED.last_version`, [record.namespace, record.model, record.version]);
    }));
  }

  async recordStageTransition(record: StageTransitionRecord): Promise<void> {
    await this.op('recordStageTransition', `${record.namespace}/${record.model} v${record.version} ${record.from} → ${record.to}`, () =>
      this.pool.query(`
        INSERT INTO stage_transitions (namespace, model, version, from_stage, to_stage, at, by, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (namespace, model, version, to_stage, at) DO NOTHING`, [
        record.namespace, record.model, record.version, record.from, record.to, record.at, record.by, record.reason,
      ]));
  }

  async recordEndpointServing(record: EndpointServingRecord): Promise<void> {
    const subject = `${record.namespace}/${record.endpoint} at ${record.at}${record.live ? ` ${record.live.model} v${record.live.version}` : ' (nothing)'}`;
    await this.op('recordEndpointServing', subject, () => this.transaction(async (db) => {
      // Serialise writers of one endpoint: two replays at once must not both see "no open period".
      await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`endpoint_serving/${record.namespace}/${record.endpoint}`]);
      // The period open at `at` ends there; one that starts later (a newer record came first) is
      // left alone. A stop may end a period in the second it began (times are whole seconds).
      await db.query(`
        UPDATE endpoint_serving SET live_until = $3
        WHERE namespace = $1 AND endpoint = $2 AND (live_from < $3 OR ($4 AND live_from = $3)) AND (live_until IS NULL OR live_until > $3)`,
      [record.namespace, record.endpoint, record.at, record.live === undefined]);
      if (!record.live) return;
      // A late record of an older moment ends where the next known period begins.
      await db.query(`
        INSERT INTO endpoint_serving (namespace, endpoint, live_from, live_until, model, version, artifact_digest)
        VALUES ($1, $2, $3, (SELECT min(live_from) FROM endpoint_serving WHERE namespace = $1 AND endpoint = $2 AND live_from > $3), $4, $5, $6)
        ON CONFLICT (namespace, endpoint, live_from) DO NOTHING`,
      [record.namespace, record.endpoint, record.at, record.live.model, record.live.version, record.live.artifactDigest]);
    }));
  }

  async servedAt(namespace: string, endpoint: string, at: string): Promise<EndpointServingPeriod | undefined> {
    return this.op('servedAt', `${namespace}/${endpoint} at ${at}`, async () => {
      const { rows } = await this.pool.query<ServingRow>(`
        SELECT ${SERVING_COLUMNS} FROM endpoint_serving
        WHERE namespace = $1 AND endpoint = $2 AND live_from <= $3 AND (live_until IS NULL OR live_until > $3)
        ORDER BY live_from DESC LIMIT 1`, [namespace, endpoint, at]);
      return rows[0] && servingPeriod(rows[0]);
    });
  }

  async servingHistory(namespace: string, endpoint: string, limit = 100): Promise<EndpointServingPeriod[]> {
    return this.op('servingHistory', `${namespace}/${endpoint}`, async () => {
      const { rows } = await this.pool.query<ServingRow>(`
        SELECT * FROM (SELECT ${SERVING_COLUMNS} FROM endpoint_serving WHERE namespace = $1 AND endpoint = $2
                       ORDER BY live_from DESC LIMIT $3) newest ORDER BY live_from`, [namespace, endpoint, limit]);
      return rows.map(servingPeriod);
    });
  }

  async nextModelVersion(namespace: string, model: string, options: NextModelVersionOptions = {}): Promise<number> {
    const { claim, atLeast = 1 } = options;
    if (!Number.isInteger(atLeast) || atLeast < 1) throw new InvalidRecordError(`nextModelVersion ${namespace}/${model}: atLeast must be a positive integer, got ${atLeast}`);
    const subject = `${namespace}/${model}${claim !== undefined ? ` (claim ${claim})` : ''}`;
    // NOTE: the upsert locks the counter row until commit, so concurrent callers get consecutive
    // numbers; a rolled-back transaction gives its number back, a committed one never reissues it.
    const issue = `
      INSERT INTO model_version_counters AS cur (namespace, model, last_version) VALUES ($1, $2, $3)
      ON CONFLICT (namespace, model) DO UPDATE SET last_version = GREATEST(cur.last_version + 1, EXCLUDED.last_version)
      RETURNING last_version`;
    if (claim === undefined) {
      return this.op('nextModelVersion', subject, async () => {
        const { rows: [row] } = await this.pool.query<{ last_version: number }>(issue, [namespace, model, atLeast]);
        if (!row) throw new Error('the counter upsert returned no row');
        return row.last_version;
      });
    }
    return this.op('nextModelVersion', subject, () => this.transaction(async (db) => {
      const claimed = async (): Promise<number | undefined> => (await db.query<{ version: number }>(
        `SELECT version FROM model_version_claims WHERE namespace = $1 AND model = $2 AND claim = $3`, [namespace, model, claim],
      )).rows[0]?.version;
      const existing = await claimed();
      if (existing !== undefined) return existing;
      const { rows: [row] } = await db.query<{ last_version: number }>(issue, [namespace, model, atLeast]);
      if (!row) throw new Error('the counter upsert returned no row');
      // A concurrent caller with the same claim waits on the counter row above, then loses here:
      // it throws (rolling its number back) only if the insert conflicts, and reads the winner's.
      const { rowCount } = await db.query(
        `INSERT INTO model_version_claims (namespace, model, claim, version) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
        [namespace, model, claim, row.last_version],
      );
      if (rowCount === 1) return row.last_version;
      throw new ClaimTaken();
    }).catch(async (err: unknown) => {
      if (!(err instanceof ClaimTaken)) throw err;
      const { rows: [won] } = await this.pool.query<{ version: number }>(
        `SELECT version FROM model_version_claims WHERE namespace = $1 AND model = $2 AND claim = $3`, [namespace, model, claim],
      );
      if (!won) throw new Error('a concurrent claim conflicted but is not visible after it committed', { cause: err });
      return won.version;
    }));
  }

  async modelProvenance(namespace: string, model: string, version: number): Promise<ModelProvenance | undefined> {
    return this.op('modelProvenance', `${namespace}/${model} v${version}`, () => lineage.modelProvenance(this.pool, namespace, model, version));
  }

  async modelsTrainedFrom(namespace: string, artifactDigest: string): Promise<Array<{ model: string; version: number }>> {
    return this.op('modelsTrainedFrom', `${namespace} ${artifactDigest}`, () => lineage.modelsTrainedFrom(this.pool, namespace, artifactDigest));
  }

  async explainCacheMiss(
    namespace: string, pipeline: string, step: string, components: Record<string, string>, options: ExplainCacheMissOptions = {},
  ): Promise<{ run: string; differing: string[] } | undefined> {
    return this.op('explainCacheMiss', `${namespace}/${pipeline} step ${step}`, () =>
      lineage.explainCacheMiss(this.pool, namespace, pipeline, step, components, options.excludeRunUid));
  }

  /** Closes the pool (waits for checked-out connections to be released). Idempotent. */
  close(): Promise<void> {
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    return (this.closed ??= this.pool.end());
  }

  /**
   * Runs one operation: migrates first if that has not succeeded yet (the database may have been
   * down at start), keeps healthy() in step with whether the database answered, and wraps failures
   * in a MetadataStoreError naming the operation and its subject.
   */
  private async op<T>(operation: string, subject: string, fn: () => Promise<T>, opts: { migrateFirst?: boolean } = {}): Promise<T> {
    if (this.closed) throw new MetadataStoreError(operation, subject, new Error('the store is closed'));
    try {
      if (opts.migrateFirst !== false && !this.schemaReady) await this.migrateOnce();
      const result = await fn();
      this.markReachable();
      return result;
    } catch (err) {
      if (err instanceof MetadataStoreError) throw err; // from migrateOnce, already counted
      if (err instanceof InvalidRecordError || reachedDatabase(err)) this.markReachable();
      else this.markUnreachable(err);
      throw new MetadataStoreError(operation, subject, err);
    }
  }

  private migrateOnce(): Promise<unknown> {
    // Concurrent first operations share one migration; a failed one is retried by the next.
    return (this.migrating ??= this.migrate().finally(() => { this.migrating = undefined; }));
  }

  private noteMigration(result: MigrationResult): void {
    this.schemaReady = true;
    if (result.applied.length > 0) this.log.info('migrated metadata schema', { applied: result.applied.join(','), version: result.current });
    if (result.unknown.length > 0) {
      this.log.warn('metadata schema is newer than this operator', { unknown: result.unknown.join(','), version: result.current });
    }
  }

  private async transaction<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        // The connection is unusable: release(err) destroys it instead of pooling it.
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  private markReachable(): void {
    if (this.ok) return;
    if (this.lastFailure !== undefined) this.log.info('reached metadata database again');
    this.ok = true;
    this.lastFailure = undefined;
    for (const listener of this.reachableListeners) listener();
  }

  private markUnreachable(err: unknown): void {
    const message = err instanceof Error ? err.message || err.name : String(err);
    if (this.ok) this.log.warn('lost metadata database', { error: message });
    this.ok = false;
    this.lastFailure = message;
    this.scheduleProbe();
  }

  /**
   * While unhealthy, pings every probeIntervalMs until a round trip succeeds, so that readiness
   * recovers (and reports a lost database) even when nothing is being recorded.
   */
  private scheduleProbe(): void {
    if (this.probeTimer !== undefined || this.closed) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.ping().then((ok) => { if (!ok) this.scheduleProbe(); });
    }, this.probeIntervalMs);
    this.probeTimer.unref(); // never what keeps the process alive
  }
}

/** Thrown inside the claim transaction to roll it back when a concurrent caller took the claim. */
class ClaimTaken extends Error {}

function dedupeExecutions(records: RunRecords): RunRecords['executions'] {
  // One upsert statement cannot touch a row twice: the last record of a step wins.
  const byStep = new Map<string, RunRecords['executions'][number]>();
  for (const e of records.executions) {
    if (e.runUid !== records.run.uid) throw new InvalidRecordError(`execution of step ${e.step} belongs to run uid ${e.runUid}, not ${records.run.uid}`);
    byStep.set(e.step, e);
  }
  // Sorted, so that concurrent transactions take row locks in the same order (no deadlock).
  return [...byStep.values()].sort((a, b) => compare(a.step, b.step));
}

function dedupeArtifacts(records: RunRecords): RunRecords['artifacts'] {
  const byKey = new Map<string, RunRecords['artifacts'][number]>();
  for (const a of records.artifacts) {
    const key = `${a.namespace}\n${a.uri}`;
    const seen = byKey.get(key);
    if (seen && seen.digest !== a.digest) throw new InvalidRecordError(`artifact ${a.uri} appears twice with digests ${seen.digest} and ${a.digest}`);
    if (!seen || (seen.size === undefined && a.size !== undefined)) byKey.set(key, a);
  }
  return [...byKey.values()].sort((a, b) => compare(a.namespace, b.namespace) || compare(a.uri, b.uri));
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Artifacts are content-addressed and immutable: the same URI with another digest is a bug upstream. */
async function checkDigests(db: pg.PoolClient, wanted: Array<{ namespace: string; uri: string; digest: string }>, what: string): Promise<void> {
  const { rows } = await db.query<{ namespace: string; uri: string; digest: string }>(`
    SELECT a.namespace, a.uri, a.digest FROM artifacts a
    JOIN jsonb_to_recordset($1::jsonb) AS x(namespace text, uri text, digest text) ON a.namespace = x.namespace AND a.uri = x.uri
    WHERE a.digest <> x.digest`, [JSON.stringify(wanted)]);
  const [first] = rows;
  if (first) {
    const want = wanted.find((w) => w.namespace === first.namespace && w.uri === first.uri);
    throw new InvalidRecordError(`${what} ${first.uri} in ${first.namespace} is recorded with digest ${first.digest}, not ${want?.digest}: artifacts are immutable`);
  }
}

interface ServingRow { model: string; version: number; artifact_digest: string; live_from: Date; live_until: Date | null }
const SERVING_COLUMNS = 'model, version, artifact_digest, live_from, live_until';

const isoSeconds = (date: Date) => date.toISOString().replace(/\.000Z$/, 'Z');

function servingPeriod(row: ServingRow): EndpointServingPeriod {
  return {
    model: row.model, version: row.version, artifactDigest: row.artifact_digest, from: isoSeconds(row.live_from),
    ...(row.live_until ? { until: isoSeconds(row.live_until) } : {}),
  };
}
