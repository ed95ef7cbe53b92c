// One pass, one write, against the real API server and real agent processes: a run whose steps
// register two models is watched from before it exists. Every status write shows up as one
// MODIFIED event of the run (nothing else writes it); the operator's 'reconciled' lines say how
// many writes each pass made. At most one per pass, and the two counts agree. Every Event of the
// run was created after the status write that holds what it announces: Events and runs share
// etcd's one revision counter, so their resourceVersions order them.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun, PipelineRunStatus } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { EVENTS, PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';

const AGENT_IMAGE = 'ferry:test';
const RUN = 'two-models-1';
const sh = (script: string) => ['sh', '-c', script];

let cluster: TestCluster;
let namespace: string;
let storeDir: string;
let operator: OperatorProcess;
let kubelet: ProcessKubelet;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('writes');
  storeDir = await mkdtemp(join(tmpdir(), 'ferry-writes-store-'));
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_AGENT_IMAGE: AGENT_IMAGE },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new ProcessKubelet(cluster.client, namespace, { agentImage: AGENT_IMAGE }).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await cluster?.cleanup();
  await rm(storeDir, { recursive: true, force: true });
});

interface Seen { resourceVersion: number; status: PipelineRunStatus }

describe('status writes of a run that registers two models', () => {
  it('are at most one per reconcile pass, and no Event comes before the write it describes', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'two-models', namespace, steps: [
      step('prepare', { command: sh('echo rows > /ferry/outputs/data'), outputs: [{ name: 'data', type: 'dataset' }] }),
      step('train', {
        dependsOn: ['prepare'], inputs: [{ name: 'data', from: { step: 'prepare', output: 'data' } }],
        command: sh('echo w1 > /ferry/outputs/model; echo \'{"accuracy": 0.91}\' > /ferry/outputs/metrics.json'),
        outputs: [{ name: 'model', type: 'model', register: { name: 'writes-iris' } }],
      }),
      step('distil', {
        dependsOn: ['train'], command: sh('echo w2 > /ferry/outputs/small'),
        outputs: [{ name: 'small', type: 'model', register: { name: 'writes-iris-small' } }],
      }),
    ] }));

    // Watch the run from before it exists: each MODIFIED event is one write of it.
    const { resourceVersion } = await cluster.client.list<PipelineRun>(PIPELINE_RUNS, namespace);
    const writes: Seen[] = [];
    let watchError: unknown;
    const watch = await cluster.client.watch<PipelineRun>(PIPELINE_RUNS, namespace,
      { resourceVersion, timeoutSeconds: 600, idleTimeoutMs: 600_000 },
      (event) => {
        if (event.type === 'MODIFIED' && event.object.metadata.name === RUN) {
          writes.push({ resourceVersion: Number(event.object.metadata.resourceVersion), status: event.object.status ?? {} });
        }
      },
      (err) => { watchError = err; });

    try {
      await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: RUN, namespace, pipeline: 'two-models', cachePolicy: 'Disabled' }));
      const done = await waitForRun(cluster, namespace, RUN, { timeoutMs: 120_000, operatorLogs: operator.logs });
      assert.equal(done.status?.phase, 'Succeeded');
      const registered = await eventually('ModelsRegistered=True', async () => {
        const run = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, RUN);
        const condition = run.status?.conditions?.find((c) => c.type === 'ModelsRegistered');
        return condition?.status === 'True' ? condition : undefined;
      });
      assert.equal(registered.message, 'registered writes-iris-v1, writes-iris-small-v1');
      // Let the last passes (Pod cleanup, records) end, then count.
      await eventually('the watch caught up with the last write', async () => {
        const run = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, RUN);
        return writes.at(-1)?.resourceVersion === Number(run.metadata.resourceVersion) ? true : undefined;
      });
      // A pass logs 'reconciled' once its Pods are deleted and its Events sent, a moment after its write.
      const reported = () => operator.logs.filter((l) => l.msg === 'reconciled' && l.name === RUN).reduce((sum, l) => sum + Number(l.statusWrites), 0);
      await eventually('every pass that wrote has reported', async () => (reported() >= writes.length ? true : undefined), 10_000).catch(() => undefined);
    } finally {
      watch.abort();
    }
    assert.equal(watchError === undefined || (watchError as Error).name === 'AbortError', true, `watch failed: ${String(watchError)}`);

    const passes = operator.logs.filter((l) => l.msg === 'reconciled' && l.name === RUN);
    const perPass = passes.map((l) => Number(l.statusWrites));
    console.log(`passes ${passes.length}, status writes seen by the watch ${writes.length}, writes per pass ${JSON.stringify(perPass)}`);
    assert.ok(passes.length >= writes.length && writes.length >= 4, `passes ${passes.length}, writes ${writes.length}`);
    assert.ok(Math.max(...perPass) <= 1, `a pass wrote status more than once: ${JSON.stringify(perPass)}`);
    assert.equal(perPass.reduce((a, b) => a + b, 0), writes.length, 'every write the API server saw is one a pass reported');

    // Each Event of the run came after the write that first holds what it says.
    const events = (await cluster.client.list<{ metadata: { resourceVersion: string }; reason: string; note: string; regarding: { name: string } }>(EVENTS, namespace))
      .items.filter((e) => e.regarding.name === RUN);
    const reasons = new Set(events.map((e) => e.reason));
    for (const expected of ['StepStarted', 'StepSucceeded', 'RunSucceeded']) assert.ok(reasons.has(expected), `an Event ${expected}: ${[...reasons].join(', ')}`);
    const stepsIn = (note: string) => [...note.matchAll(/step "([^"]+)"/g)].map((m) => m[1]!);
    const holds: Record<string, (status: PipelineRunStatus, note: string) => boolean> = {
      StepStarted: (s, note) => stepsIn(note).every((name) => (s.steps?.find((x) => x.name === name)?.attempts ?? 0) >= 1),
      StepSucceeded: (s, note) => stepsIn(note).every((name) => s.steps?.find((x) => x.name === name)?.phase === 'Succeeded'),
      RunSucceeded: (s) => s.phase === 'Succeeded',
    };
    for (const event of events) {
      const describes = holds[event.reason];
      assert.ok(describes, `an Event the test knows: ${event.reason} (${event.note})`);
      const write = writes.find((w) => describes(w.status, event.note));
      assert.ok(write, `a status write holds what ${event.reason} says: ${event.note}`);
      assert.ok(Number(event.metadata.resourceVersion) > write.resourceVersion,
        `${event.reason} (rv ${event.metadata.resourceVersion}) came after the write it describes (rv ${write.resourceVersion})`);
    }
  });
});
