// What an integration test file uses to reach the shared API server from global-setup.ts:
// an admin KubeClient, kubectl, and fresh namespaces that are deleted at the end.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { NAMESPACES, PIPELINE_RUNS } from '../../operator/kube/resources.ts';
import { run, type KubectlResult } from './api-server.ts';

export interface TestCluster {
  kubeconfigPath: string;
  client: KubeClient;
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /** kubectl that throws with stderr on a non-zero exit. */
  kubectlOk(args: string[], input?: string): Promise<string>;
  createNamespace(prefix: string): Promise<string>;
  cleanup(): Promise<void>;
}

export function connect(): TestCluster {
  const kubeconfigPath = process.env.FERRY_TEST_KUBECONFIG;
  const binDir = process.env.FERRY_TEST_BIN_DIR;
  if (!kubeconfigPath || !binDir) {
    throw new Error('FERRY_TEST_KUBECONFIG is not set: run integration tests with npm test (test/global-setup.ts starts the API server)');
  }
  const client = new KubeClient(loadKubeConfig(kubeconfigPath), { qps: 500, burst: 1000, fieldManager: 'ferry-test' });
  const namespaces: string[] = [];
  const kubectl = (args: string[], input?: string) => run(join(binDir, 'kubectl'), ['--kubeconfig', kubeconfigPath, ...args], input);
  return {
    kubeconfigPath,
    client,
    kubectl,
    async kubectlOk(args, input) {
      const result = await kubectl(args, input);
      if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr}`);
      return result.stdout;
    },
    async createNamespace(prefix) {
      const name = `${prefix}-${randomBytes(3).toString('hex')}`;
      await client.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      namespaces.push(name);
      return name;
    },
    async cleanup() {
      await Promise.all(namespaces.map((n) => client.delete(NAMESPACES, undefined, n)));
    },
  };
}

/** Polls until `check` returns a value (not undefined), or fails with the last seen state. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const FINAL_PHASES = ['Succeeded', 'Failed', 'Cancelled'];

/**
 * Waits until a PipelineRun reaches a final phase and returns it; on timeout the error carries
 * the run's last status and the operator's last warnings, which is what one needs to debug it.
 */
export async function waitForRun(
  cluster: TestCluster, namespace: string, name: string,
  options: { timeoutMs?: number; operatorLogs?: Array<{ level: string }> } = {},
): Promise<PipelineRun> {
  let last: PipelineRun | undefined;
  try {
    return await eventually(`run ${name} to finish`, async () => {
      last = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, name);
      return FINAL_PHASES.includes(last.status?.phase ?? '') ? last : undefined;
    }, options.timeoutMs ?? 60_000, 150);
  } catch (err) {
    const warnings = (options.operatorLogs ?? []).filter((l) => l.level === 'warn' || l.level === 'error').slice(-3);
    throw new Error(`${String(err)}; last status: ${JSON.stringify(last?.status)}; operator warnings: ${JSON.stringify(warnings)}`);
  }
}
