// PostgresMetadataStore against a real PostgreSQL (test/harness/postgres.ts), one fresh database for
// this file: concurrent migrations, idempotent run records, lineage across two pipelines, cache-miss
// explanations, version numbering under concurrency, and an outage (server killed, then back).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { MetadataStoreError } from '../../operator/metadata/errors.ts';
import { MIGRATIONS } from '../../operator/metadata/migrations.ts';
import { PostgresMetadataStore } from '../../operator/metadata/postgres-store.ts';
import type { ArtifactRecord, ExecutionRecord, LineageEdge, RunRecord, RunRecords } from '../../operator/metadata/records.ts';
import { startPostgres, type Postgres } from '../harness/postgres.ts';

const NS = 'ml';
const TABLES = ['pipelines', 'runs', 'step_executions', 'artifacts', 'lineage_edges', 'model_versions', 'stage_transitions'];

// The lineage every test below builds on:
//   pipeline features, run features-a1: step features  raw (r) → feats (f)
//   pipeline train,    run train-b1:    step train     feats (f) → model m (iris v1)
//   pipeline train,    run train-c1:    step train     other (o) → model m2 (iris v2)
const artifact = (name: string, digest: string, type: string): ArtifactRecord =>
  ({ namespace: NS, uri: `file:///var/lib/ferry/artifacts/${NS}/${name}/${digest}`, digest, type, size: 1024 });
const raw = artifact('raw', 'sha256:r', 'dataset');
const feats = artifact('feats', 'sha256:f', 'dataset');
const other = artifact('other', 'sha256:o', 'dataset');
const modelM = artifact('model', 'sha256:m', 'model');
const modelM2 = artifact('model', 'sha256:m2', 'model');

function run(uid: string, name: string, pipeline: string, phase: string, startedAt: string, finishedAt?: string): RunRecord {
  return {
    uid, namespace: NS, name, pipeline, pipelineSpecHash: `sha256:spec-${pipeline}`,
    configurationUri: `file:///var/lib/ferry/artifacts/${NS}/configurations/${uid}.json`,
    configurationDigest: `sha256:config-${uid}`, phase, startedAt, ...(finishedAt ? { finishedAt } : {}),
  };
}

function execution(runUid: string, step: string, phase: string, extra: Partial<ExecutionRecord> = {}): ExecutionRecord {
  return { runUid, step, phase, attempts: 1, podName: `${runUid}-${step}-0`, ...extra };
}

function edge(runUid: string, step: string, direction: LineageEdge['direction'], name: string, a: ArtifactRecord): LineageEdge {
  return { runUid, step, direction, name, artifactUri: a.uri, artifactDigest: a.digest };
}

const trainComponents = (input: string): Record<string, string> => ({
  image: 'registry.local/train@sha256:img1',
  command: '["python","train.py"]',
  'param.lr': '0.1',
  'input.features': input,
  cacheVersion: '1',
});

// Run a1 as first seen (Running, no outputs yet), then finished.
const a1Running: RunRecords = {
  run: run('uid-a1', 'features-a1', 'features', 'Running', '2026-01-10T10:00:00Z'),
  executions: [execution('uid-a1', 'features', 'Running', { startedAt: '2026-01-10T10:00:05Z', cacheKey: 'sha256:k-features' })],
  artifacts: [raw],
  edges: [edge('uid-a1', 'features', 'consumed', 'raw', raw)],
};
const a1Done: RunRecords = {
  run: run('uid-a1', 'features-a1', 'features', 'Succeeded', '2026-01-10T10:00:00Z', '2026-01-10T10:05:00Z'),
  executions: [execution('uid-a1', 'features', 'Succeeded', {
    startedAt: '2026-01-10T10:00:05Z', finishedAt: '2026-01-10T10:04:50Z', cacheKey: 'sha256:k-features', metrics: { rows: 150 },
  })],
  artifacts: [raw, feats],
  edges: [edge('uid-a1', 'features', 'consumed', 'raw', raw), edge('uid-a1', 'features', 'produced', 'features', feats)],
};
const b1: RunRecords = {
  run: run('uid-b1', 'train-b1', 'train', 'Succeeded', '2026-01-11T09:00:00Z', '2026-01-11T09:30:00Z'),
  executions: [execution('uid-b1', 'train', 'Succeeded', {
    startedAt: '2026-01-11T09:00:10Z', finishedAt: '2026-01-11T09:29:00Z', cacheKey: 'sha256:k-b1',
    cacheComponents: trainComponents(feats.digest), metrics: { accuracy: 0.93 },
  })],
  artifacts: [feats, modelM],
  edges: [edge('uid-b1', 'train', 'consumed', 'features', feats), edge('uid-b1', 'train', 'produced', 'model', modelM)],
};
// A later identical run of train whose step was a cache hit on b1: it reuses m, it does not produce it.
const b2: RunRecords = {
  run: run('uid-b2', 'train-b2', 'train', 'Succeeded', '2026-01-11T12:00:00Z', '2026-01-11T12:00:02Z'),
  executions: [execution('uid-b2', 'train', 'Cached', {
    attempts: 0, cacheKey: 'sha256:k-b1', cacheComponents: trainComponents(feats.digest), cachedFrom: 'train-b1',
    startedAt: '2026-01-11T12:00:01Z', finishedAt: '2026-01-11T12:00:01Z',
  })],
  artifacts: [feats, modelM],
  edges: [edge('uid-b2', 'train', 'consumed', 'features', feats), edge('uid-b2', 'train', 'produced', 'model', modelM)],
};
const c1: RunRecords = {
  run: run('uid-c1', 'train-c1', 'train', 'Succeeded', '2026-01-12T09:00:00Z', '2026-01-12T09:30:00Z'),
  executions: [execution('uid-c1', 'train', 'Succeeded', {
    startedAt: '2026-01-12T09:00:10Z', finishedAt: '2026-01-12T09:29:00Z', cacheKey: 'sha256:k-c1',
    cacheComponents: trainComponents(other.digest), metrics: { accuracy: 0.95 },
  })],
  artifacts: [other, modelM2],
  edges: [edge('uid-c1', 'train', 'consumed', 'features', other), edge('uid-c1', 'train', 'produced', 'model', modelM2)],
};

describe('PostgresMetadataStore on a real PostgreSQL', () => {
  let server: Postgres | undefined;
  let url = '';
  let admin: pg.Pool | undefined;
  const stores: PostgresMetadataStore[] = [];
  const open = (): PostgresMetadataStore => {
    const store = new PostgresMetadataStore(url, { connectionTimeoutMs: 2_000, statementTimeoutMs: 5_000 });
    stores.push(store);
    return store;
  };
  let store: PostgresMetadataStore;
  const db = (): pg.Pool => {
    if (!admin) throw new Error('before() did not run');
    return admin;
  };
  const counts = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(TABLES.map(async (t) =>
    [t, Number((await db().query<{ n: string }>(`SELECT count(*) AS n FROM ${t}`)).rows[0]?.n)] as const)));

  before(async () => {
    server = await startPostgres({ log: (line) => process.stderr.write(`[postgres] ${line}\n`) });
    url = server.url(await server.createDatabase('metadata_store'));
    admin = new pg.Pool({ connectionString: url, max: 2 });
    admin.on('error', () => {}); // idle connections die with the server in the outage test
    store = open();
  });

  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await admin?.end();
    await server?.stop();
  });

  it('applies each migration once when two replicas migrate at the same time, and again is a no-op', async () => {
    const replicaA = store;
    const replicaB = open();
    await Promise.all([replicaA.migrate(), replicaB.migrate(), replicaA.migrate(), replicaB.migrate(), replicaA.migrate()]);
    const query = `SELECT version, count(*)::int AS n, min(applied_at) AS at FROM ferry_schema_migrations GROUP BY version ORDER BY version`;
    const first = (await db().query<{ version: number; n: number; at: Date }>(query)).rows;
    assert.deepEqual(first.map((r) => [r.version, r.n]), MIGRATIONS.map((m) => [m.version, 1]));
    await replicaB.migrate();
    assert.deepEqual((await db().query(query)).rows, first);
    assert.equal(replicaA.healthy(), true);
  });

  it('records a run once, however often the same records are written', async () => {
    await store.recordRun(a1Running);
    const once = await counts();
    const stamp = async () => (await db().query(`SELECT (SELECT max(updated_at) FROM runs) AS r, (SELECT max(updated_at) FROM step_executions) AS e`)).rows[0];
    const before = await stamp();
    await store.recordRun(a1Running);
    await Promise.all([store.recordRun(a1Running), open().recordRun(a1Running)]);
    assert.deepEqual(await counts(), once);
    assert.deepEqual(await stamp(), before, 'a replay updates no row');
    assert.deepEqual(once, { pipelines: 1, runs: 1, step_executions: 1, artifacts: 1, lineage_edges: 1, model_versions: 0, stage_transitions: 0 });
  });

  it('updates the run from a later, more complete record, and a stale replay does not move it back', async () => {
    await store.recordRun(a1Done);
    const read = async () => (await db().query<{ phase: string; finished_at: Date | null; step_phase: string; metrics: unknown }>(`
      SELECT r.phase, r.finished_at, e.phase AS step_phase, e.metrics
      FROM runs r JOIN step_executions e ON e.run_uid = r.uid WHERE r.uid = 'uid-a1'`)).rows[0];
    const done = await read();
    assert.equal(done?.phase, 'Succeeded');
    assert.equal(done?.finished_at?.toISOString(), '2026-01-10T10:05:00.000Z');
    assert.equal(done?.step_phase, 'Succeeded');
    assert.deepEqual(done?.metrics, { rows: 150 });
    const full = await counts();
    assert.equal(full.artifacts, 2);
    assert.equal(full.lineage_edges, 2);

    await store.recordRun(a1Running); // e.g. an outbox entry replayed late
    assert.deepEqual(await read(), done);
    assert.deepEqual(await counts(), full);
  });

  it('answers lineage queries across pipelines: provenance of a model version and models trained from a dataset', async () => {
    await store.recordRun(b1);
    await store.recordRun(b2);
    await store.recordRun(c1);
    await store.recordModelVersion({
      namespace: NS, model: 'iris', version: 1, artifactUri: modelM.uri, artifactDigest: modelM.digest,
      runUid: 'uid-b1', runName: 'train-b1', step: 'train', configurationDigest: b1.run.configurationDigest,
      metrics: { accuracy: 0.93 }, stage: 'None',
    });
    await store.recordModelVersion({
      namespace: NS, model: 'iris', version: 2, artifactUri: modelM2.uri, artifactDigest: modelM2.digest,
      runUid: 'uid-c1', runName: 'train-c1', step: 'train', configurationDigest: c1.run.configurationDigest,
      metrics: { accuracy: 0.95 }, stage: 'None',
    });
    const transition = {
      namespace: NS, model: 'iris', version: 1, from: 'None', to: 'Production', at: '2026-01-11T10:00:00Z', by: 'promotion', reason: 'accuracy 0.93 >= 0.9',
    };
    await store.recordStageTransition(transition);
    await store.recordStageTransition(transition);
    assert.equal((await counts()).stage_transitions, 1);

    assert.deepEqual(await store.modelProvenance(NS, 'iris', 1), {
      model: 'iris',
      version: 1,
      artifactDigest: 'sha256:m',
      run: {
        uid: 'uid-b1', name: 'train-b1', pipeline: 'train',
        configurationUri: b1.run.configurationUri, configurationDigest: b1.run.configurationDigest,
      },
      step: 'train',
      datasets: [
        { uri: feats.uri, digest: 'sha256:f', producedBy: { run: 'features-a1', step: 'features' } },
        { uri: raw.uri, digest: 'sha256:r' },
      ],
    });
    const v2 = await store.modelProvenance(NS, 'iris', 2);
    assert.equal(v2?.run.name, 'train-c1');
    assert.deepEqual(v2?.datasets, [{ uri: other.uri, digest: 'sha256:o' }]);
    assert.equal(await store.modelProvenance(NS, 'iris', 3), undefined);
    assert.equal(await store.modelProvenance('elsewhere', 'iris', 1), undefined);

    assert.deepEqual(await store.modelsTrainedFrom(NS, 'sha256:r'), [{ model: 'iris', version: 1 }]);
    assert.deepEqual(await store.modelsTrainedFrom(NS, 'sha256:f'), [{ model: 'iris', version: 1 }]);
    assert.deepEqual(await store.modelsTrainedFrom(NS, 'sha256:o'), [{ model: 'iris', version: 2 }]);
    assert.deepEqual(await store.modelsTrainedFrom(NS, 'sha256:m'), [], 'a model is not trained from itself');
    assert.deepEqual(await store.modelsTrainedFrom('elsewhere', 'sha256:r'), []);

    // The cache hit in b2 reused m: b1 stays its producer.
    const { rows: [producer] } = await db().query<{ run_uid: string }>(`
      SELECT e.run_uid FROM artifacts a JOIN step_executions e ON e.id = a.producer_execution_id WHERE a.uri = $1`, [modelM.uri]);
    assert.equal(producer?.run_uid, 'uid-b1');
  });

  it('explains a cache miss by the components that differ from the latest earlier execution', async () => {
    const now = { ...trainComponents(other.digest), image: 'registry.local/train@sha256:img2', 'param.epochs': '10' };
    // Latest execution of train/train with components is c1 (b2, the cache hit, started earlier).
    assert.deepEqual(await store.explainCacheMiss(NS, 'train', 'train', now), { run: 'train-c1', differing: ['image', 'param.epochs'] });
    assert.deepEqual(
      await store.explainCacheMiss(NS, 'train', 'train', now, { excludeRunUid: 'uid-c1' }),
      { run: 'train-b2', differing: ['image', 'input.features', 'param.epochs'] },
    );
    assert.deepEqual(await store.explainCacheMiss(NS, 'train', 'train', trainComponents(other.digest)), { run: 'train-c1', differing: [] });
    assert.equal(await store.explainCacheMiss(NS, 'features', 'features', now), undefined, 'no execution with components');
    assert.equal(await store.explainCacheMiss('elsewhere', 'train', 'train', now), undefined);
  });

  it('issues distinct version numbers to concurrent callers, the same one again for the same claim, never one reused', async () => {
    const replicas = [store, open()];
    const issued = await Promise.all(Array.from({ length: 20 }, (_, i) => replicas[i % 2]!.nextModelVersion(NS, 'churn')));
    assert.deepEqual([...issued].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));

    const claimed = await Promise.all(Array.from({ length: 5 }, (_, i) => replicas[i % 2]!.nextModelVersion(NS, 'churn', { claim: 'uid-x/train/model' })));
    assert.deepEqual(claimed, [21, 21, 21, 21, 21]);
    assert.equal(await store.nextModelVersion(NS, 'churn', { claim: 'uid-y/train/model' }), 22);
    assert.equal(await store.nextModelVersion(NS, 'churn', { atLeast: 30 }), 30);
    assert.equal(await store.nextModelVersion(NS, 'churn'), 31);
    // A version recorded without asking (restored objects) moves the counter past it.
    await store.recordModelVersion({
      namespace: NS, model: 'churn', version: 40, artifactUri: modelM.uri, artifactDigest: modelM.digest, metrics: {}, stage: 'None',
    });
    assert.equal(await store.nextModelVersion(NS, 'churn'), 41);
    assert.equal(await store.nextModelVersion(NS, 'iris'), 3, 'iris v1 and v2 were recorded');
    assert.equal(await store.nextModelVersion('other-namespace', 'churn'), 1);
  });

  it('fails clearly and turns unhealthy while PostgreSQL is down, and works again once it is back', async () => {
    assert.ok(server);
    assert.equal(store.healthy(), true);
    const probing = new PostgresMetadataStore(url, { probeIntervalMs: 100 });
    stores.push(probing);
    assert.equal(await probing.ping(), true); // leaves an idle pooled connection to lose
    await server.kill();
    const lostBy = Date.now() + 5_000;
    while (probing.healthy() && Date.now() < lostBy) await new Promise((r) => setTimeout(r, 20));
    assert.equal(probing.healthy(), false, 'an idle store notices the lost connection');
    await assert.rejects(store.modelProvenance(NS, 'iris', 1), (err: unknown) => {
      assert.ok(err instanceof MetadataStoreError);
      // Refused, or (when a pooled connection's backend saw the postmaster die first) terminated.
      assert.match(err.message, /^metadata store: modelProvenance ml\/iris v1 failed: (connect ECONNREFUSED 127\.0\.0\.1:\d+|terminating connection due to unexpected postmaster exit|Connection terminated)/);
      assert.equal(err.retryable, true);
      return true;
    });
    assert.equal(store.healthy(), false);
    assert.ok(store.lastError());
    await assert.rejects(store.recordRun(c1), /recordRun ml\/train-c1 \(uid uid-c1\) failed/);
    assert.equal(store.healthy(), false);

    await server.start();
    // With no traffic at all, the store's own probe notices that the database is back.
    const idle = probing;
    const deadline = Date.now() + 5_000;
    while (!idle.healthy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(idle.healthy(), true, `the probing store recovered by itself (last error: ${idle.lastError()})`);

    const provenance = await store.modelProvenance(NS, 'iris', 1);
    assert.equal(provenance?.run.name, 'train-b1');
    assert.equal(store.healthy(), true);
    assert.equal(store.lastError(), undefined);
    await store.recordRun(c1);
    assert.equal(await store.ping(), true);
  });
});

describe('endpoint serving periods on a real PostgreSQL', () => {
  let server: Postgres | undefined;
  let store: PostgresMetadataStore;
  const v = (version: number) => ({ model: 'iris', version, artifactDigest: `sha256:${String(version).repeat(64)}` });
  const T = (hh: string) => `2026-12-02T${hh}:00:00Z`;

  before(async () => {
    server = await startPostgres({ log: (line) => process.stderr.write(`[postgres] ${line}\n`) });
    store = new PostgresMetadataStore(server.url(await server.createDatabase('serving_periods')), { connectionTimeoutMs: 2_000, statementTimeoutMs: 5_000 });
    // v1 from 10:00, v2 from 12:00, nothing from 14:00.
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('10'), live: v(1) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('12'), live: v(2) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('14') });
  });

  after(async () => {
    await store?.close();
    await server?.stop();
  });

  it('answers which version was live at a moment, boundaries included', async () => {
    const at = async (iso: string) => (await store.servedAt(NS, 'iris-predict', iso))?.version;
    assert.equal(await at('2026-12-02T09:59:59Z'), undefined, 'before the first period');
    assert.equal(await at(T('10')), 1, 'a period includes its start');
    assert.equal(await at('2026-12-02T11:59:59Z'), 1);
    assert.equal(await at(T('12')), 2, 'and excludes its end');
    assert.equal(await at('2026-12-02T13:02:00Z'), 2);
    assert.equal(await at(T('14')), undefined, 'after the stop');
    assert.deepEqual(await store.servedAt(NS, 'iris-predict', '2026-12-02T11:00:00Z'), { ...v(1), from: T('10'), until: T('12') });
  });

  it('keeps the periods, oldest first, and a replay changes nothing', async () => {
    const expected = [{ ...v(1), from: T('10'), until: T('12') }, { ...v(2), from: T('12'), until: T('14') }];
    assert.deepEqual(await store.servingHistory(NS, 'iris-predict'), expected);
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('10'), live: v(1) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('12'), live: v(2) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'iris-predict', at: T('14') });
    assert.deepEqual(await store.servingHistory(NS, 'iris-predict'), expected);
    assert.deepEqual(await store.servingHistory(NS, 'iris-predict', 1), [expected[1]], 'limit keeps the newest');
  });

  it('a late record of an older moment leaves one open period at most', async () => {
    // v4 from 16:00 recorded first, then (a replay after an outage) v3 from 15:00.
    await store.recordEndpointServing({ namespace: NS, endpoint: 'late', at: T('16'), live: v(4) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'late', at: T('15'), live: v(3) });
    assert.deepEqual(await store.servingHistory(NS, 'late'), [{ ...v(3), from: T('15'), until: T('16') }, { ...v(4), from: T('16') }]);
    assert.equal((await store.servedAt(NS, 'late', '2026-12-02T17:00:00Z'))?.version, 4);
  });

  it('a stop in the second a period began ends it there', async () => {
    await store.recordEndpointServing({ namespace: NS, endpoint: 'brief', at: T('18'), live: v(5) });
    await store.recordEndpointServing({ namespace: NS, endpoint: 'brief', at: T('18') });
    assert.deepEqual(await store.servingHistory(NS, 'brief'), [{ ...v(5), from: T('18'), until: T('18') }]);
    assert.equal(await store.servedAt(NS, 'brief', T('18')), undefined);
  });

  it('keeps namespaces apart: the same endpoint name in another namespace sees none of it', async () => {
    assert.equal(await store.servedAt('other-team', 'iris-predict', '2026-12-02T11:00:00Z'), undefined);
    assert.deepEqual(await store.servingHistory('other-team', 'iris-predict'), []);
  });
});
