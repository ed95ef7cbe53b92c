// `npm run bench:outage`: what a PostgreSQL outage costs the PipelineRun controller. The real
// operator against a real kube-apiserver and a real PostgreSQL (a fake kubelet moves the Pods):
// N runs with the database up, N runs while it is down (killed), then it comes back and N more
// run with it up (so drift over the run, the cluster filling, shows in neither side alone). It
// reports the reconcile duration p50 and p90 of the phases (ferry_reconcile_duration_seconds,
// side by side in one run: down against both up phases together), how long after the database
// returned every run was recorded, and whether every record arrived. Writes bench/results/<date>-metadata-outage.json.
//
//   node bench/metadata-outage.ts [--runs=20] [--phase-s=120] [--out=FILE]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { NAMESPACES, PIPELINE_RUNS, PIPELINES } from '../operator/kube/resources.ts';
import { KubeClient, loadKubeConfig } from '../operator/kube/client.ts';
import type { PipelineRun } from '../operator/api/v1alpha1/pipeline-run.ts';
import { startApiServer } from '../test/harness/api-server.ts';
import { installCrds } from '../test/harness/crds.ts';
import { FakeKubelet } from '../test/harness/fake-kubelet.ts';
import { startOperator } from '../test/harness/operator-process.ts';
import { startPostgres } from '../test/harness/postgres.ts';
import { pipeline, pipelineRun, step } from '../test/builders.ts';
import { parseMetrics, type Sample } from './lib/prom.ts';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, 'phase-s': { type: 'string', default: '120' }, out: { type: 'string' } },
});
const RUNS = Number(values.runs);
const PHASE_MS = Number(values['phase-s']) * 1000;
const NAMESPACE = 'outage';
const HISTOGRAM = 'ferry_reconcile_duration_seconds';

/** The pipelinerun controller's reconcile histogram: cumulative counts by upper bound. */
function histogramOf(samples: Sample[]): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${HISTOGRAM}_bucket` || s.labels.controller !== 'pipelinerun') continue;
    buckets.set(s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value);
  }
  return buckets;
}

/** after − before, bucket by bucket. */
const minus = (after: Map<number, number>, before: Map<number, number>): Map<number, number> =>
  new Map([...after].map(([le, n]) => [le, n - (before.get(le) ?? 0)]));

const plus = (a: Map<number, number>, b: Map<number, number>): Map<number, number> =>
  new Map([...a].map(([le, n]) => [le, n + (b.get(le) ?? 0)]));

/** A quantile of cumulative bucket counts, interpolated within its bucket as histogram_quantile does. */
function quantile(q: number, buckets: Map<number, number>): { seconds: number; count: number } {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => buckets.get(b) ?? 0);
  const total = counts.at(-1) ?? 0;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    const upper = bounds[i]!;
    if (!Number.isFinite(upper)) return { seconds: lower, count: total };
    const below = i === 0 ? 0 : counts[i - 1]!;
    const inBucket = counts[i]! - below;
    return { seconds: lower + (upper - lower) * (inBucket === 0 ? 0 : (rank - below) / inBucket), count: total };
  }
  return { seconds: NaN, count: total };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const server = await startApiServer({ log: (line) => process.stderr.write(`[apiserver] ${line}\n`) });
  const postgres = await startPostgres();
  const kubelets: FakeKubelet[] = [];
  const storeDir = await mkdtemp(join(tmpdir(), 'ferry-outage-store-'));
  let operator: ReturnType<typeof startOperator> | undefined;
  try {
    await installCrds(server);
    const client = new KubeClient(loadKubeConfig(server.kubeconfigPath), { qps: 200, burst: 400, fieldManager: 'ferry-bench' });
    await client.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
    const database = await postgres.createDatabase('outage');
    operator = startOperator({
      kubeconfigPath: server.kubeconfigPath, namespaces: [NAMESPACE], leaseName: 'ferry', leaseNamespace: NAMESPACE,
      env: { FERRY_DATABASE_URL: postgres.url(database), FERRY_LOG_LEVEL: 'info', FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_ARTIFACT_SERVER_LISTEN: '127.0.0.1:0' },
    });
    const starting = await operator.waitForLog((l) => l.msg === 'operator starting', 60_000);
    await operator.waitForLog((l) => l.msg === 'controller started', 60_000);
    const scrape = async () => parseMetrics(await (await fetch(`http://127.0.0.1:${Number(starting.httpPort)}/metrics`)).text());
    kubelets.push(new FakeKubelet(client, NAMESPACE, () => ({ outcome: 'succeed', afterMs: 500 })).start());
    await client.create(PIPELINES, NAMESPACE, pipeline({
      name: 'chain', namespace: NAMESPACE, steps: [step('a'), step('b', { dependsOn: ['a'] }), step('c', { dependsOn: ['b'] })],
    }));

    const runPhase = async (label: string): Promise<{ buckets: Map<number, number>; names: string[] }> => {
      process.stderr.write(`phase ${label}: ${RUNS} runs over ${PHASE_MS / 1000} s\n`);
      const before = histogramOf(await scrape());
      const names = Array.from({ length: RUNS }, (_, i) => `${label}-${i + 1}`);
      for (const name of names) {
        await client.create(PIPELINE_RUNS, NAMESPACE, pipelineRun({ name, namespace: NAMESPACE, pipeline: 'chain' }));
        await sleep(PHASE_MS / RUNS);
      }
      for (;;) {
        const runs = await client.list<PipelineRun>(PIPELINE_RUNS, NAMESPACE);
        const phases = names.map((n) => runs.items.find((r) => r.metadata.name === n)?.status?.phase);
        const failed = runs.items.find((r) => names.includes(r.metadata.name) && (r.status?.phase === 'Failed' || r.status?.phase === 'Cancelled'));
        if (failed) throw new Error(`run ${failed.metadata.name} ended ${failed.status?.phase}: ${JSON.stringify(failed.status?.conditions)}`);
        if (phases.every((p) => p === 'Succeeded')) break;
        await sleep(500);
      }
      return { buckets: minus(histogramOf(await scrape()), before), names };
    };

    const first = await runPhase('up');
    await postgres.kill();
    const down = await runPhase('down');
    await postgres.start();
    const back = Date.now();
    const db = new pg.Client({ connectionString: postgres.url(database) });
    await db.connect();
    const recordedOf = async (names: string[]) => Number((await db.query<{ n: string }>(
      `select count(*) n from runs where phase = 'Succeeded' and name = any($1)`, [names])).rows[0]?.n ?? 0);
    let recorded = 0;
    for (const deadline = back + 120_000; Date.now() < deadline; await sleep(250)) {
      recorded = await recordedOf([...first.names, ...down.names]);
      if (recorded === 2 * RUNS) break;
    }
    const secondsAfterReturn = (Date.now() - back) / 1000;
    const second = await runPhase('up-again');
    const { rows: executions } = await db.query<{ n: string }>('select count(*) n from step_executions');
    const recordedAll = await recordedOf([...first.names, ...down.names, ...second.names]);
    await db.end();
    const upBuckets = plus(first.buckets, second.buckets);
    const up = { p50: quantile(0.5, upBuckets).seconds, p90: quantile(0.9, upBuckets).seconds, reconciles: quantile(0.5, upBuckets).count };
    const downQ = { p50: quantile(0.5, down.buckets).seconds, p90: quantile(0.9, down.buckets).seconds, reconciles: quantile(0.5, down.buckets).count };
    const result = {
      date: new Date().toISOString(),
      runsPerPhase: RUNS, phaseSeconds: PHASE_MS / 1000, steps: 3,
      reconcileSeconds: { up, down: downQ },
      p50Ratio: downQ.p50 / up.p50,
      recorded: { runsOfOutage: recorded, of: 2 * RUNS, secondsAfterReturn, allRuns: recordedAll, executions: Number(executions[0]?.n ?? 0) },
    };
    const out = values.out ?? join('bench', 'results', `${new Date().toISOString().slice(0, 19).replace(/:/g, '')}-metadata-outage.json`);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    const ms = (s: number) => `${(s * 1000).toFixed(2)} ms`;
    console.log(`reconcile p50: PostgreSQL up ${ms(up.p50)} (${up.reconciles} reconciles), down ${ms(downQ.p50)} (${downQ.reconciles}); ratio ${result.p50Ratio.toFixed(2)}`);
    console.log(`reconcile p90: up ${ms(up.p90)}, down ${ms(downQ.p90)}`);
    console.log(`recorded ${secondsAfterReturn.toFixed(1)} s after PostgreSQL came back: ${recorded}/${2 * RUNS} runs; in the end ${recordedAll}/${3 * RUNS} runs, ${result.recorded.executions} executions; wrote ${out}`);
    if (recorded !== 2 * RUNS || recordedAll !== 3 * RUNS) process.exitCode = 1;
  } finally {
    for (const kubelet of kubelets) await kubelet.stop();
    await operator?.stop();
    await postgres.stop();
    await server.stop();
    await rm(storeDir, { recursive: true, force: true });
  }
}

await main();
