// What the tests that run real agents need, set up in one place: a namespace of the shared API
// server, a file:// store in a temp directory, the operator as a child process, and the process
// kubelet playing each Pod. stop() undoes it all, in reverse order.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TestCluster } from './cluster.ts';
import { startOperator, type OperatorProcess } from './operator-process.ts';
import { ProcessKubelet } from './process-kubelet.ts';

export const AGENT_IMAGE = 'ferry:test';

export interface ProcessRig {
  cluster: TestCluster;
  namespace: string;
  storeDir: string;
  operator: OperatorProcess;
  kubelet: ProcessKubelet;
  stop(): Promise<void>;
}

export async function startProcessRig(name: string, env: Record<string, string> = {}): Promise<ProcessRig> {
  const cluster = connect();
  const namespace = await cluster.createNamespace(name);
  const storeDir = await mkdtemp(join(tmpdir(), `ferry-${name}-store-`));
  const operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_AGENT_IMAGE: AGENT_IMAGE, ...env },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  const kubelet = new ProcessKubelet(cluster.client, namespace, { agentImage: AGENT_IMAGE }).start();
  return {
    cluster, namespace, storeDir, operator, kubelet,
    async stop() {
      await kubelet.stop();
      await operator.stop();
      await cluster.cleanup();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
