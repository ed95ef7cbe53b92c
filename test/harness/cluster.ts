// What an integration test file uses to reach the shared API server from global-setup.ts:
// an admin KubeClient, kubectl, and fresh namespaces that are deleted at the end.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { NAMESPACES } from '../../operator/kube/resources.ts';
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
