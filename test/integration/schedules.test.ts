// A Pipeline's schedules against the real API server, with the Pipeline controller in this
// process on an injected clock: the clock moves, the controller wakes (as its timer would),
// and the runs it started are read back from the API server. A restart is a new controller
// with new caches; two controllers at once stand for a pass cut off before its status write.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { ScheduleSpec } from '../../operator/api/v1alpha1/schedule.ts';
import { createPipelineController } from '../../operator/controllers/pipeline/controller.ts';
import { pipelineIndexes, runIndexes } from '../../operator/controllers/indexes.ts';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { EventRecorder } from '../../operator/kube/events.ts';
import { PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { silentLogger } from '../../operator/observability/logger.ts';
import { Metrics } from '../../operator/observability/metrics.ts';
import { Cache } from '../../operator/runtime/cache.ts';
import { pipeline, step } from '../builders.ts';
import { connect, eventually, type TestCluster } from '../harness/cluster.ts';

let cluster: TestCluster;
let namespace: string;
const clock = { current: new Date('2026-12-03T10:00:30Z'), now() { return new Date(this.current); } };
const setTime = (iso: string) => { clock.current = new Date(iso); };

/** The Pipeline controller as the operator runs it, with schedules, on the injected clock. */
async function startController() {
  const client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath), { qps: 100, burst: 200, fieldManager: 'ferry-operator' });
  const pipelines = new Cache<Pipeline, keyof typeof pipelineIndexes>(client, [namespace], { resource: PIPELINES, idleTimeoutMs: 60_000, indexes: pipelineIndexes }, silentLogger);
  const runs = new Cache<PipelineRun, keyof typeof runIndexes>(client, [namespace], { resource: PIPELINE_RUNS, idleTimeoutMs: 60_000, indexes: runIndexes }, silentLogger);
  const metrics = new Metrics({ defaultMetrics: false });
  const events = new EventRecorder(client, 'schedules-test', clock, silentLogger);
  const controller = createPipelineController({ client, pipelines, events, clock, log: silentLogger, metrics, schedules: { runs } }, 1);
  pipelines.start();
  runs.start();
  await Promise.all([pipelines.waitForSync(), runs.waitForSync()]);
  controller.start();
  return {
    enqueue: (name: string) => controller.enqueue(`${namespace}/${name}`),
    /** The scheduled time came: the controller wakes, as its timer would, and acts. */
    async wake(name: string) {
      controller.enqueue(`${namespace}/${name}`);
      await settled(name);
    },
    async stop() {
      await controller.stop();
      await Promise.all([pipelines.stop(), runs.stop()]);
    },
  };
}

/** Waits until the Pipeline's status follows the clock: its next time lies ahead of it. */
const settled = (name: string): Promise<Pipeline> =>
  eventually(`pipeline ${name}: its schedules' status moved past ${clock.current.toISOString()}`, async () => {
    const p = await cluster.client.get<Pipeline>(PIPELINES, namespace, name);
    const nexts = (p.status?.schedules ?? []).map((s) => s.nextScheduleTime);
    return nexts.length > 0 && nexts.every((n) => n !== undefined && Date.parse(n) > clock.current.getTime()) ? p : undefined;
  }, 10_000, 50);

const runsOf = async (pipelineName: string) =>
  (await cluster.client.list<PipelineRun>(PIPELINE_RUNS, namespace, `ferry.dev/pipeline=${pipelineName}`)).items.map((r) => r.metadata.name).sort();

async function scheduled(name: string, schedule: Partial<ScheduleSpec>): Promise<void> {
  await cluster.client.create(PIPELINES, namespace, pipeline({
    name, namespace, parameters: [{ name: 'size', type: 'int', default: 1 }],
    steps: [step('train')],
    schedules: [{ name: 'every', cron: '*/1 * * * *', ...schedule }],
  } as never));
}

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('schedules');
});

after(async () => {
  await cluster?.cleanup();
});

describe('schedules', () => {
  it('*/1 across a restart and a 10-minute gap: a run for each time before, one catch-up run after, none twice', async (t) => {
    setTime('2026-12-03T10:00:30Z');
    await scheduled('minutely', { concurrencyPolicy: 'Allow', parameters: [{ name: 'size', value: 3 }] });
    let operator = await startController();
    await settled('minutely');
    for (const time of ['10:01:05', '10:02:05']) {
      setTime(`2026-12-03T${time}Z`);
      await operator.wake('minutely');
    }
    await operator.stop();
    // Down from 10:02:05 to 10:12:20: 10:03 … 10:12 come and go. Two operators start at once,
    // as a pass cut off before its status write and the next one would both act on 10:12.
    setTime('2026-12-03T10:12:20Z');
    operator = await startController();
    const twin = await startController();
    const after = await settled('minutely');
    await twin.stop();
    const names = await runsOf('minutely');
    t.diagnostic(`runs: ${names.join(', ')}`);
    t.diagnostic(`status: ${JSON.stringify(after.status?.schedules)}`);
    const minute = (hhmm: string) => `minutely-every-${Date.parse(`2026-12-03T${hhmm}:00Z`) / 60_000}`;
    assert.deepEqual(names, [minute('10:01'), minute('10:02'), minute('10:12')]);
    const status = after.status!.schedules![0]!;
    assert.equal(status.lastRun, minute('10:12'));
    assert.equal(status.lastScheduleTime, '2026-12-03T10:12:00.000Z');
    assert.equal(status.nextScheduleTime, '2026-12-03T10:13:00.000Z');
    assert.equal(status.missed, 9, '10:03 … 10:11');
    assert.match(status.message ?? '', /9 scheduled times missed while the operator was down \(only the latest is run\)/);
    const run = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, minute('10:12'));
    assert.deepEqual(run.spec.parameters, [{ name: 'size', value: 3 }]);
    assert.equal(run.spec.pipelineRef?.name, 'minutely');
    assert.equal(run.metadata.annotations?.['ferry.dev/scheduled-at'], '2026-12-03T10:12:00.000Z');
    setTime('2026-12-03T10:13:01Z');
    await operator.wake('minutely');
    assert.equal((await runsOf('minutely')).length, 4);
    await operator.stop();
  });

  it('Forbid skips a time while its last run still runs; Replace cancels that run and starts the new one', async () => {
    setTime('2026-12-03T11:00:30Z');
    await scheduled('forbid', { concurrencyPolicy: 'Forbid' });
    await scheduled('replace', { concurrencyPolicy: 'Replace' });
    const operator = await startController();
    await Promise.all([settled('forbid'), settled('replace')]);
    setTime('2026-12-03T11:01:02Z');
    await Promise.all([operator.wake('forbid'), operator.wake('replace')]);
    const [first] = await runsOf('forbid');
    const [replaced] = await runsOf('replace');
    // No run controller here: both runs stay unfinished.
    setTime('2026-12-03T11:02:02Z');
    await Promise.all([operator.wake('forbid'), operator.wake('replace')]);
    assert.deepEqual(await runsOf('forbid'), [first], 'Forbid started nothing');
    const forbid = (await cluster.client.get<Pipeline>(PIPELINES, namespace, 'forbid')).status!.schedules![0]!;
    assert.match(forbid.message ?? '', new RegExp(`skipped 2026-12-03T11:02:00.000Z: run ${first} still runs \\(concurrencyPolicy Forbid\\)`));
    assert.equal(forbid.missed, 1);
    const replacing = await runsOf('replace');
    assert.equal(replacing.length, 2);
    assert.equal((await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, replaced!)).spec.cancel, true, 'the running one was cancelled');

    // Once the Forbid run has finished, the next time starts a run again.
    const done = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, first!);
    await cluster.client.replaceStatus(PIPELINE_RUNS, { ...done, status: { phase: 'Succeeded' } });
    await new Promise((resolve) => setTimeout(resolve, 300)); // the run cache sees it
    setTime('2026-12-03T11:03:02Z');
    await operator.wake('forbid');
    assert.equal((await runsOf('forbid')).length, 2);
    await operator.stop();
  });

  it('a cron that cannot be read, an unknown time zone or parameter makes the Pipeline not Ready, and starts nothing', async () => {
    setTime('2026-12-03T12:00:30Z');
    const cases: Array<[string, Partial<ScheduleSpec>, RegExp]> = [
      ['bad-cron', { cron: '61 * * * *' }, /schedule "every": cron "61 \* \* \* \*": .*minute: 61/],
      ['bad-zone', { timeZone: 'Mars/Olympus' }, /schedule "every": cron .* in time zone "Mars\/Olympus"/],
      ['bad-param', { parameters: [{ name: 'sise', value: 3 }] }, /schedule "every": parameter "sise" is not a parameter of the Pipeline \(it has "size"\)/],
    ];
    const operator = await startController();
    for (const [name, schedule] of cases) await scheduled(name, schedule);
    for (const [name, , message] of cases) {
      const ready = await eventually(`pipeline ${name} has a Ready condition`, async () =>
        (await cluster.client.get<Pipeline>(PIPELINES, namespace, name)).status?.conditions?.find((c) => c.type === 'Ready'), 10_000, 50);
      assert.equal(ready.status, 'False', name);
      assert.equal(ready.reason, 'InvalidSchedule');
      assert.match(ready.message, message);
    }
    setTime('2026-12-03T12:05:30Z');
    for (const [name] of cases) operator.enqueue(name);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const [name] of cases) assert.deepEqual(await runsOf(name), [], `${name} started nothing`);
    await operator.stop();
  });
});
