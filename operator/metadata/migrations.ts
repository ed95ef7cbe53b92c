// The metadata schema as versioned, append-only migrations, and migrate(), which the operator runs
// at start (PostgresMetadataStore.migrate). Replicas starting together serialise on an advisory
// lock, so each migration is applied exactly once. docs/adr/0005-metadata-store.md explains the tables.
import { createHash } from 'node:crypto';
import type pg from 'pg';

export interface Migration {
  /** 1, 2, 3, … with no gaps; the order they are applied in. */
  version: number;
  name: string;
  sql: string;
}

// NOTE: append-only. A released migration's SQL never changes (migrate() refuses a database whose
// recorded checksum differs); a schema change is a new entry at the end.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, executions, artifacts, lineage, model registry',
    sql: `
-- One row per distinct Pipeline spec a run used.
CREATE TABLE pipelines (
  namespace     text        NOT NULL,
  name          text        NOT NULL,
  spec_hash     text        NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, name, spec_hash)
);

CREATE TABLE runs (
  uid                  text        PRIMARY KEY,
  namespace            text        NOT NULL,
  name                 text        NOT NULL,
  pipeline             text        NOT NULL,
  pipeline_spec_hash   text        NOT NULL,
  configuration_uri    text        NOT NULL,
  configuration_digest text        NOT NULL,
  phase                text        NOT NULL,
  started_at           timestamptz,
  finished_at          timestamptz,
  reproduced_from      text,
  recorded_at          timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (namespace, pipeline, pipeline_spec_hash) REFERENCES pipelines (namespace, name, spec_hash)
);
-- Runs of a pipeline, newest first (explainCacheMiss, "latest succeeded run" of fromPipeline).
CREATE INDEX runs_by_pipeline ON runs (namespace, pipeline, started_at DESC);
CREATE INDEX runs_by_name ON runs (namespace, name);

CREATE TABLE step_executions (
  id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_uid          text        NOT NULL REFERENCES runs (uid) ON DELETE CASCADE,
  step             text        NOT NULL,
  -- Copied from the run: cache lookups never cross namespaces and need no join.
  namespace        text        NOT NULL,
  phase            text        NOT NULL,
  attempts         integer     NOT NULL DEFAULT 0,
  pod_name         text,
  cache_key        text,
  cache_components jsonb,
  cached_from      text,
  started_at       timestamptz,
  finished_at      timestamptz,
  metrics          jsonb,
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_uid, step)
);
CREATE INDEX step_executions_by_cache_key ON step_executions (namespace, cache_key) WHERE cache_key IS NOT NULL;

CREATE TABLE artifacts (
  id                    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  namespace             text        NOT NULL,
  uri                   text        NOT NULL,
  digest                text        NOT NULL,
  type                  text        NOT NULL,
  size_bytes            bigint,
  -- The first execution seen producing it; a cache hit that reuses it does not replace it.
  producer_execution_id bigint      REFERENCES step_executions (id) ON DELETE SET NULL,
  recorded_at           timestamptz NOT NULL DEFAULT now(),
  UNIQUE (namespace, uri)
);
CREATE INDEX artifacts_by_digest ON artifacts (namespace, digest);
-- For the foreign key's ON DELETE SET NULL when old runs are pruned.
CREATE INDEX artifacts_by_producer ON artifacts (producer_execution_id) WHERE producer_execution_id IS NOT NULL;

CREATE TABLE lineage_edges (
  execution_id bigint NOT NULL REFERENCES step_executions (id) ON DELETE CASCADE,
  direction    text   NOT NULL CHECK (direction IN ('consumed', 'produced')),
  -- The step's input or output name.
  name         text   NOT NULL,
  artifact_id  bigint NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
  PRIMARY KEY (execution_id, direction, name, artifact_id)
);
-- From an artifact to the executions that produced (upstream walk) or consumed it (downstream walk);
-- the primary key serves the other half of each hop (execution → its inputs or outputs).
CREATE INDEX lineage_edges_by_artifact ON lineage_edges (artifact_id, direction);

-- No foreign key to runs: records may arrive in any order (replayed after an outage), and the
-- provenance query joins what is there.
CREATE TABLE model_versions (
  namespace            text        NOT NULL,
  model                text        NOT NULL,
  version              integer     NOT NULL CHECK (version > 0),
  artifact_uri         text        NOT NULL,
  artifact_digest      text        NOT NULL,
  run_uid              text,
  run_name             text,
  step                 text,
  configuration_digest text,
  metrics              jsonb       NOT NULL DEFAULT '{}'::jsonb,
  stage                text        NOT NULL,
  recorded_at          timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, model, version)
);
CREATE INDEX model_versions_by_digest ON model_versions (namespace, artifact_digest);

CREATE TABLE stage_transitions (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  namespace   text        NOT NULL,
  model       text        NOT NULL,
  version     integer     NOT NULL,
  from_stage  text        NOT NULL,
  to_stage    text        NOT NULL,
  at          timestamptz NOT NULL,
  by          text        NOT NULL,
  reason      text        NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (namespace, model, version, to_stage, at)
);

-- The last version number issued per model: numbers are never reused, even after a version is
-- deleted, and concurrent registrations serialise on the row.
CREATE TABLE model_version_counters (
  namespace    text    NOT NULL,
  model        text    NOT NULL,
  last_version integer NOT NULL,
  PRIMARY KEY (namespace, model)
);

-- A number issued for a claim (e.g. run uid + step + output) is issued again for the same claim,
-- so a reconcile that retries before it sees the ModelVersion it created does not take a second one.
CREATE TABLE model_version_claims (
  namespace  text        NOT NULL,
  model      text        NOT NULL,
  claim      text        NOT NULL,
  version    integer     NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, model, claim)
);
`,
  },
  {
    version: 2,
    name: 'step results and forEach collections',
    sql: `
-- The typed values a step wrote (canonical text by name), and a forEach step's items.
ALTER TABLE step_executions ADD COLUMN results jsonb;
ALTER TABLE step_executions ADD COLUMN collection_uri text;
ALTER TABLE step_executions ADD COLUMN collection_digest text;
ALTER TABLE step_executions ADD COLUMN items jsonb;
`,
  },
  {
    version: 3,
    name: 'endpoint serving periods',
    sql: `
-- Which model version answered at an endpoint (a Pipeline's serving) from when until when; an
-- open period (live_until NULL) is the one answering now. Keyed by its start, so recording the
-- same moment twice stores it once.
CREATE TABLE endpoint_serving (
  namespace text NOT NULL,
  endpoint text NOT NULL,
  live_from timestamptz NOT NULL,
  live_until timestamptz,
  model text NOT NULL,
  version integer NOT NULL,
  artifact_digest text NOT NULL,
  PRIMARY KEY (namespace, endpoint, live_from),
  CHECK (live_until IS NULL OR live_until >= live_from)
);
-- "Which version answered at T" reads the newest period starting at or before T: the primary
-- key's order serves it backwards; and the versions' side ("where was iris v3 live").
CREATE INDEX endpoint_serving_by_version ON endpoint_serving (namespace, model, version);
`,
  },
];

/** Key of the transaction-scoped advisory lock every migrate() takes ("ferrymig" in ASCII). */
export const MIGRATION_LOCK_KEY = 0x666572726d6967n;

/** The table recording applied migrations. */
export const MIGRATIONS_TABLE = 'ferry_schema_migrations';

/** A migration too slow for this is better failed and retried than left holding the lock. */
const MIGRATION_TIMEOUT = '300s';

export interface MigrationResult {
  /** Versions this call applied (empty when another replica or an earlier start had). */
  applied: number[];
  /** The highest version recorded in the database after this call. */
  current: number;
  /** Versions in the database that this build does not know (a newer operator migrated it). */
  unknown: number[];
}

export function checksum(migration: Migration): string {
  return createHash('sha256').update(migration.sql).digest('hex');
}

/** Throws if the list is not 1, 2, 3, … (caught by the unit test, not at a customer's start). */
export function validateMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration ${JSON.stringify(m.name)} has version ${m.version}, expected ${i + 1}: versions are 1, 2, 3, … in order`);
    }
  });
}

/**
 * Applies every migration the database lacks, in one transaction under an advisory lock, and
 * records each in ferry_schema_migrations. A concurrent caller waits for the lock, then finds
 * nothing left to do.
 */
export async function migrate(pool: pg.Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  validateMigrations(migrations);
  const client = await pool.connect();
  let release: Error | undefined;
  try {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL statement_timeout = '${MIGRATION_TIMEOUT}'`);
      // NOTE: the lock comes first, so that even creating the bookkeeping table is serialised.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
      await client.query(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: number; checksum: string }>(
        `SELECT version, checksum FROM ${MIGRATIONS_TABLE} ORDER BY version`,
      );
      const recorded = new Map(rows.map((r) => [r.version, r.checksum]));
      for (const m of migrations) {
        const seen = recorded.get(m.version);
        if (seen !== undefined && seen !== checksum(m)) {
          throw new Error(
            `migration ${m.version} (${m.name}) was applied with different SQL (checksum ${seen.slice(0, 12)}… in the database, ` +
            `${checksum(m).slice(0, 12)}… in this build): released migrations must not be edited; add a new one instead`,
          );
        }
      }
      const applied: number[] = [];
      for (const m of migrations) {
        if (recorded.has(m.version)) continue;
        try {
          await client.query(m.sql);
        } catch (err) {
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
        }
        await client.query(
          `INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)`,
          [m.version, m.name, checksum(m)],
        );
        applied.push(m.version);
      }
      await client.query('COMMIT');
      const known = new Set(migrations.map((m) => m.version));
      const all = [...recorded.keys(), ...applied];
      return { applied, current: Math.max(0, ...all), unknown: [...recorded.keys()].filter((v) => !known.has(v)) };
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        // A broken connection must not go back to the pool.
        release = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw err;
    }
  } finally {
    client.release(release);
  }
}
