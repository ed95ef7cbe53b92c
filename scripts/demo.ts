// `npm run demo`: a local control plane (real etcd + kube-apiserver), the Ferry operator, and
// the example pipeline in manifests/examples/diamond.yaml, with live progress. No kubelet runs
// yet (the real single-node cluster is issue 7), so step Pods are moved along by a simulated
// kubelet and say so. `--keep` leaves everything running and prints the KUBECONFIG to use.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import type { PipelineRun } from '../operator/api/v1alpha1/pipeline-run.ts';
import { KubeClient, loadKubeConfig } from '../operator/kube/client.ts';
import { PIPELINE_RUNS, PIPELINES } from '../operator/kube/resources.ts';
import { startApiServer } from '../test/harness/api-server.ts';
import { installCrds } from '../test/harness/crds.ts';
import { FakeKubelet } from '../test/harness/fake-kubelet.ts';
import { startOperator } from '../test/harness/operator-process.ts';

const root = join(import.meta.dirname, '..');
const keep = process.argv.includes('--keep');
const say = (text: string) => console.log(`[demo] ${text}`);

say('starting a local control plane (etcd + kube-apiserver on 127.0.0.1) ...');
const server = await startApiServer();
let stopped = false;
const operator = startOperator({
  kubeconfigPath: server.kubeconfigPath, namespaces: ['default'], leaseName: 'ferry', leaseNamespace: 'default',
  // A fresh control plane gets a fresh store (removed with it).
  env: { FERRY_ARTIFACT_STORE: `file://${join(server.workDir, 'artifacts')}` },
});
const client = new KubeClient(loadKubeConfig(server.kubeconfigPath), { qps: 50, burst: 100, fieldManager: 'ferry-demo' });
const kubelet = new FakeKubelet(client, 'default', () => ({ outcome: 'succeed', afterMs: 1500 }));
async function shutdown(code: number): Promise<never> {
  if (!stopped) {
    stopped = true;
    await kubelet.stop();
    await operator.stop();
    await server.stop();
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));

try {
  await installCrds(server);
  say('CRDs installed: pipelines, pipelineruns, modelversions (ferry.dev/v1alpha1)');
  await operator.waitForLog((l) => l.msg === 'controller started');
  say(`operator running (pid ${operator.pid}), leader of Lease default/ferry`);
  kubelet.start();
  say('step Pods are simulated: no kubelet in this demo yet');

  const documents = loadAll(await readFile(join(root, 'manifests/examples/diamond.yaml'), 'utf8')) as Array<{
    kind: string; metadata: { name: string }; spec: { steps?: Array<{ image: string }> };
  }>;
  // No registry is reachable from this demo: pin images to placeholder digests (the Pods are simulated).
  for (const step of documents.flatMap((d) => d.spec.steps ?? [])) step.image = `${step.image.split(':')[0]}@sha256:${'0'.repeat(64)}`;
  say('step images pinned to placeholder digests (no registry in this demo)');
  for (const doc of documents) {
    const resource = doc.kind === 'Pipeline' ? PIPELINES : PIPELINE_RUNS;
    await client.create(resource, 'default', doc as never);
    say(`applied ${doc.kind} ${doc.metadata.name}`);
  }

  const seen = new Map<string, string>();
  let run: PipelineRun;
  let lastMessage = '';
  for (;;) {
    run = await client.get<PipelineRun>(PIPELINE_RUNS, 'default', 'diamond-1');
    const message = run.status?.conditions?.find((c) => c.type === 'Succeeded')?.message ?? '';
    if (run.status?.phase === 'Pending' && message && message !== lastMessage) say(`  waiting: ${(lastMessage = message)}`);
    for (const step of run.status?.steps ?? []) {
      const state = `${step.phase}${step.attempts ? ` (attempt ${step.attempts})` : ''}`;
      if (seen.get(step.name) !== state) {
        seen.set(step.name, state);
        say(`  ${run.status?.progress ?? '0/?'}  step ${step.name.padEnd(8)} ${state}`);
      }
    }
    if (['Succeeded', 'Failed', 'Cancelled'].includes(run.status?.phase ?? '')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
  say(`run diamond-1 ${run.status?.phase}: ${condition?.message}`);
  say(`frozen configuration: ${run.status?.configuration?.uri} (${run.status?.configuration?.digest})`);
  console.log((await server.kubectl(['get', 'pipelines,pipelineruns', '-o', 'wide'])).stdout);
  console.log((await server.kubectl(['get', 'pods', '-L', 'ferry.dev/step,ferry.dev/attempt'])).stdout);
  if (keep) {
    say(`still running; in another shell: export KUBECONFIG=${server.kubeconfigPath}`);
    say('press Ctrl-C to stop everything');
    await new Promise(() => {});
  }
  await shutdown(run.status?.phase === 'Succeeded' ? 0 : 1);
} catch (err) {
  console.error(`[demo] failed: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
}
