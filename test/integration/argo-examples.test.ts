// Argo Workflows' classic examples (examples/argo/, one Pipeline each) against the real API
// server, their steps run as local processes by the process kubelet: every example's Pipeline
// and a run of it (coinflip three times: heads, tails, at random) are applied at once in one
// namespace, and each run must end as its Argo original does (test/argo-examples.ts says how).
import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { openArtifactStore } from '../../operator/artifacts/open.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PODS } from '../../operator/kube/resources.ts';
import { argoCases, loadArgoExamples, runOf, type ArgoExample } from '../argo-examples.ts';
import { TEST_IMAGE } from '../builders.ts';
import { waitForRun, type TestCluster } from '../harness/cluster.ts';
import type { OperatorProcess } from '../harness/operator-process.ts';
import { startProcessRig, type ProcessRig } from '../harness/process-rig.ts';

const cases = argoCases('integration');
/**
 * Runs in flight at once. Every step Pod here is two Node.js agent processes besides the step, so
 * a dozen runs at once (some thirty Pods) can starve a two-CPU machine, the operator's Lease
 * renewals included.
 */
const RUNS_AT_ONCE = 4;

let rig: ProcessRig;
let cluster: TestCluster;
let namespace: string;
let storeDir: string;
let operator: OperatorProcess;
const runs = new Map<string, Promise<PipelineRun>>();

before(async () => {
  // A longer Lease than the default 15 s (renewed within 10 s): this test is about the examples, not
  // about a leader that a busy machine keeps from renewing (test/integration/leader-election.test.ts).
  rig = await startProcessRig('argo', { FERRY_LEASE_DURATION_SECONDS: '60', FERRY_RENEW_DEADLINE_SECONDS: '45' });
  ({ cluster, namespace, storeDir, operator } = rig);

  const examples = new Map<string, ArgoExample>((await loadArgoExamples(TEST_IMAGE)).map((e) => [e.name, e]));
  assert.deepEqual(new Set(cases.map((c) => c.example)), new Set(examples.keys()), 'a run of every example, and no other');
  // Applied as a user would (server-side apply validates fields strictly: a misspelt or misplaced
  // field in a YAML file fails here, where a plain create would drop it).
  for (const example of examples.values()) {
    await cluster.kubectlOk(['-n', namespace, 'apply', '--server-side', '--field-manager=ferry-test', '-f', '-'], JSON.stringify(example.pipeline));
  }
  // Each run starts when one of the RUNS_AT_ONCE before it has finished (or given up waiting).
  const lanes: Array<Promise<unknown>> = Array.from({ length: RUNS_AT_ONCE }, () => Promise.resolve());
  cases.forEach((c, i) => {
    const finished = lanes[i % RUNS_AT_ONCE]!.then(async () => {
      await cluster.client.create(PIPELINE_RUNS, namespace, runOf(examples.get(c.example)!, c, namespace));
      return waitForRun(cluster, namespace, c.run, { operatorLogs: operator.logs, timeoutMs: 120_000 });
    });
    lanes[i % RUNS_AT_ONCE] = finished.catch(() => undefined);
    runs.set(c.run, finished);
  });
  for (const finished of runs.values()) finished.catch(() => undefined); // each is awaited by its test
});

after(() => rig?.stop());

const readObject = async (uri: string): Promise<Buffer> => buffer(await openArtifactStore(`file://${storeDir}`).read(uri));

describe('Argo Workflows examples as Ferry Pipelines', () => {
  for (const c of cases) {
    it(`${c.example}: ${c.run}`, async () => {
      const run = await runs.get(c.run)!;
      const { items: pods } = await cluster.client.list<Pod>(PODS, namespace, `ferry.dev/run=${c.run}`);
      console.log(await c.check({ run, pods, readObject }));
    });
  }
});
