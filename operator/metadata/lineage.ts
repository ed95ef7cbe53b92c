// Lineage queries over the metadata schema: where a model version came from (run, configuration,
// step and every upstream dataset), which model versions an artifact fed, and why a step missed the
// cache. PostgresMetadataStore delegates to these; each is a plain function over a connection.
//
// The graph: an execution consumed artifacts and produced artifacts (lineage_edges). Walking
// upstream from an artifact goes to the execution that first produced it (artifacts.
// producer_execution_id: a cache hit reuses an artifact, it does not produce it), then to what that
// execution consumed, and so on. Walking downstream goes from an artifact to every execution that
// consumed it, then to what those produced, and so on.
import type pg from 'pg';
import type { ModelProvenance } from './records.ts';

/** A pool or a checked-out client. */
export interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * A guard against corrupt (cyclic) lineage only: real chains are as long as the number of steps a
 * dataset passed through, and the walk visits each (execution, depth) pair once.
 */
export const MAX_LINEAGE_DEPTH = 1000;

interface ProducerRow {
  artifact_digest: string;
  execution_id: string;
  step: string;
  run_uid: string;
  run_name: string;
  pipeline: string;
  configuration_uri: string;
  configuration_digest: string;
}

/**
 * Which run, configuration and step produced `model` version `version`, and every dataset upstream
 * of it, nearest first. Undefined when the version, or the execution that produced it, is unknown.
 */
export async function modelProvenance(
  db: Queryable, namespace: string, model: string, version: number,
): Promise<ModelProvenance | undefined> {
  // The producing execution: the run and step the model version names, else the artifact's first
  // producer found by URI, else by digest (a copy of the same bytes elsewhere).
  const { rows: [producer] } = await db.query<ProducerRow>(`
    WITH mv AS (
      SELECT artifact_uri, artifact_digest, run_uid, step
      FROM model_versions WHERE namespace = $1 AND model = $2 AND version = $3
    ),
    candidates(execution_id, priority) AS (
      SELECT e.id, 0 FROM mv JOIN step_executions e ON e.run_uid = mv.run_uid AND e.step = mv.step
      UNION ALL
      SELECT a.producer_execution_id, 1 FROM mv JOIN artifacts a ON a.namespace = $1 AND a.uri = mv.artifact_uri
      UNION ALL
      SELECT a.producer_execution_id, 2 FROM mv JOIN artifacts a ON a.namespace = $1 AND a.digest = mv.artifact_digest
    )
    SELECT mv.artifact_digest, e.id AS execution_id, e.step, r.uid AS run_uid, r.name AS run_name, r.pipeline,
           r.configuration_uri, r.configuration_digest
    FROM candidates c
    CROSS JOIN mv
    JOIN step_executions e ON e.id = c.execution_id
    JOIN runs r ON r.uid = e.run_uid
    ORDER BY c.priority, e.id
    LIMIT 1`, [namespace, model, version]);
  if (producer === undefined) return undefined;

  const { rows } = await db.query<{ uri: string; digest: string; producer_run: string | null; producer_step: string | null }>(`
    WITH RECURSIVE upstream(execution_id, depth) AS (
      SELECT $1::bigint, 0
      UNION
      SELECT a.producer_execution_id, u.depth + 1
      FROM upstream u
      JOIN lineage_edges c ON c.execution_id = u.execution_id AND c.direction = 'consumed'
      JOIN artifacts a ON a.id = c.artifact_id
      WHERE a.producer_execution_id IS NOT NULL AND u.depth < $2
    ),
    consumed AS (
      SELECT c.artifact_id, min(u.depth) AS depth
      FROM upstream u JOIN lineage_edges c ON c.execution_id = u.execution_id AND c.direction = 'consumed'
      GROUP BY c.artifact_id
    )
    SELECT a.uri, a.digest, pr.name AS producer_run, pe.step AS producer_step
    FROM consumed x
    JOIN artifacts a ON a.id = x.artifact_id
    LEFT JOIN step_executions pe ON pe.id = a.producer_execution_id
    LEFT JOIN runs pr ON pr.uid = pe.run_uid
    WHERE a.type = 'dataset'
    ORDER BY x.depth, a.uri`, [producer.execution_id, MAX_LINEAGE_DEPTH]);

  return {
    model,
    version,
    artifactDigest: producer.artifact_digest,
    run: {
      uid: producer.run_uid,
      name: producer.run_name,
      pipeline: producer.pipeline,
      configurationUri: producer.configuration_uri,
      configurationDigest: producer.configuration_digest,
    },
    step: producer.step,
    datasets: rows.map((r) => ({
      uri: r.uri,
      digest: r.digest,
      ...(r.producer_run !== null && r.producer_step !== null ? { producedBy: { run: r.producer_run, step: r.producer_step } } : {}),
    })),
  };
}

/**
 * Model versions whose artifact was produced, through any number of steps, from an artifact with
 * this digest (in the namespace), sorted by model and version. The artifact's own model version,
 * if it is one, is not "trained from" itself and is left out unless a step derived it again.
 */
export async function modelsTrainedFrom(
  db: Queryable, namespace: string, artifactDigest: string,
): Promise<Array<{ model: string; version: number }>> {
  // NOTE: UNION (not UNION ALL) over artifact ids visits each artifact once, so even a cycle in
  // corrupt lineage terminates.
  const { rows } = await db.query<{ model: string; version: number }>(`
    WITH RECURSIVE downstream(artifact_id) AS (
      SELECT p.artifact_id
      FROM artifacts s
      JOIN lineage_edges c ON c.artifact_id = s.id AND c.direction = 'consumed'
      JOIN lineage_edges p ON p.execution_id = c.execution_id AND p.direction = 'produced'
      WHERE s.namespace = $1 AND s.digest = $2
      UNION
      SELECT p.artifact_id
      FROM downstream d
      JOIN lineage_edges c ON c.artifact_id = d.artifact_id AND c.direction = 'consumed'
      JOIN lineage_edges p ON p.execution_id = c.execution_id AND p.direction = 'produced'
    )
    SELECT DISTINCT mv.model, mv.version
    FROM downstream d
    JOIN artifacts a ON a.id = d.artifact_id
    JOIN model_versions mv ON mv.namespace = a.namespace AND mv.artifact_digest = a.digest
    ORDER BY mv.model, mv.version`, [namespace, artifactDigest]);
  return rows.map((r) => ({ model: r.model, version: r.version }));
}

/**
 * The latest execution of `pipeline`'s `step` in the namespace that recorded cache components
 * (optionally not of one run), and the names of the components whose values differ from
 * `components` (present on one side only counts as differing), sorted. `run` is the run's name.
 */
export async function explainCacheMiss(
  db: Queryable, namespace: string, pipeline: string, step: string, components: Record<string, string>,
  excludeRunUid?: string,
): Promise<{ run: string; differing: string[] } | undefined> {
  const { rows: [nearest] } = await db.query<{ name: string; cache_components: Record<string, unknown> }>(`
    SELECT r.name, e.cache_components
    FROM runs r
    JOIN step_executions e ON e.run_uid = r.uid AND e.step = $3
    WHERE r.namespace = $1 AND r.pipeline = $2 AND e.cache_components IS NOT NULL
      AND ($4::text IS NULL OR r.uid <> $4::text)
    ORDER BY COALESCE(e.started_at, r.started_at, e.recorded_at) DESC, e.id DESC
    LIMIT 1`, [namespace, pipeline, step, excludeRunUid ?? null]);
  if (nearest === undefined) return undefined;
  return { run: nearest.name, differing: differingComponents(nearest.cache_components, components) };
}

/** Names of the keys whose values differ between the two maps (missing on one side differs), sorted. */
export function differingComponents(earlier: Record<string, unknown>, now: Record<string, string>): string[] {
  const names = new Set([...Object.keys(earlier), ...Object.keys(now)]);
  const text = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : JSON.stringify(v));
  return [...names].filter((n) => text(earlier[n]) !== text(now[n])).sort();
}
