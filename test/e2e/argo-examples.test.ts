// End to end, in real Pods: Argo Workflows' classic examples (examples/argo/, one Pipeline each)
// on the local single-node cluster with Ferry installed by its chart (scripts/demo/local.ts, as
// test/e2e/iris.test.ts does). Every example's Pipeline and a run of it (coinflip three times:
// heads, tails, at random) start at once in a fresh tenant namespace, each step in the example
// image; each run must end as its Argo original does (test/argo-examples.ts says how), and the
// telling steps' logs say what Argo's would. Needs root on Linux.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PODS } from '../../operator/kube/resources.ts';
import { applyPipelines } from '../../scripts/demo/examples.ts';
import { setUpLocal, type LocalSetup } from '../../scripts/demo/local.ts';
import { RunProgress } from '../../scripts/demo/progress.ts';
import { argoCases, loadArgoExamples, runOf, stepOf } from '../argo-examples.ts';
import { E2E_WORK_DIR, e2eLog, hostPathOf, kubectlOk as kubectlOkIn } from './local-cluster.ts';

if (process.platform !== 'linux' || process.getuid?.() !== 0) {
  throw new Error('test/e2e runs a real kubelet, containerd and kube-proxy: it needs root on Linux (CI runs it as root); npm test leaves it out elsewhere');
}

const installNamespace = 'ferry-system';
/** A tenant of its own each time: a reused cluster may still hold an earlier run's namespace. */
const namespace = `argo-${randomBytes(3).toString('hex')}`;
const runTimeoutMs = 10 * 60_000;
const log = e2eLog;
// The same work dir as test/e2e/iris.test.ts: its registry already holds the images.
const workDir = E2E_WORK_DIR;
const cases = argoCases('e2e');

let setup: LocalSetup | undefined;
let client: KubeClient;
let progress: RunProgress | undefined;
let finished: Promise<Map<string, PipelineRun>>;

before(async () => {
  setup = await setUpLocal({ namespace: installNamespace, release: 'ferry', workDir, log });
  client = new KubeClient(loadKubeConfig(setup.cluster.kubeconfigPath), { qps: 20, burst: 40, fieldManager: 'ferry-e2e' });
  await kubectlOk(['create', 'namespace', namespace]);
  const examples = new Map((await loadArgoExamples(setup.exampleImage)).map((e) => [e.name, e]));
  assert.deepEqual(new Set(cases.map((c) => c.example)), new Set(examples.keys()), 'a run of every example, and no other');
  await applyPipelines(setup.cluster, namespace, [...examples.values()].map((e) => e.pipeline));
  progress = new RunProgress(client, namespace, log);
  await progress.start();
  // All at once: the slowest (parallelism-limit's five rounds, timeouts-step's 10 s) set the time.
  for (const c of cases) await client.create(PIPELINE_RUNS, namespace, runOf(examples.get(c.example)!, c, namespace));
  finished = progress.finished(cases.map((c) => c.run), runTimeoutMs).then((runs) => new Map(runs.map((r) => [r.metadata.name, r])));
  finished.catch(() => undefined); // awaited by the tests
}, { timeout: 1_800_000 }); // a first run builds the node binaries and the example image (minutes)

after(async () => {
  await progress?.stop();
  const report = await setup?.cluster.stop();
  assert.deepEqual(report?.failed ?? [], [], 'the cluster left something behind');
});

const kubectlOk = (args: string[]): Promise<string> => kubectlOkIn(setup, args);

/** An object of the chart's file:// store, read from the host directory behind its hostPath volume. */
const readObject = (uri: string): Promise<Buffer> => readFile(hostPathOf(setup, uri));

describe('Argo Workflows examples as Ferry Pipelines, in real Pods', () => {
  for (const c of cases) {
    it(`${c.example}: ${c.run}`, async () => {
      const run = (await finished).get(c.run)!;
      const { items: pods } = await client.list<Pod>(PODS, namespace, `ferry.dev/run=${c.run}`);
      const outcome = await c.check({ run, pods, readObject });
      for (const expected of c.logs ?? []) {
        // A step served from the step cache (an identical step of another run) has no Pod.
        if (stepOf(run, expected.step).phase === 'Cached') continue;
        const text = await kubectlOk(['-n', namespace, 'logs', expected.pod]);
        assert.ok(text.includes(expected.includes), `kubectl logs ${expected.pod} says ${JSON.stringify(expected.includes)}: ${text}`);
      }
      console.log(outcome);
    });
  }
});
