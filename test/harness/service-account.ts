// Acting as a ServiceAccount against the test API server: a kubeconfig with the admin's server
// and CA and a token from the TokenRequest API, and kubectl run with it. The RBAC and
// promotion-guard tests use these to be the operator, or a person, rather than the admin.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dump, load } from 'js-yaml';
import { run as runProcess } from './api-server.ts';
import type { TestCluster } from './cluster.ts';

/** Writes a kubeconfig for `namespace/name` into `dir` and returns its path. */
export async function serviceAccountKubeconfig(cluster: TestCluster, dir: string, namespace: string, name: string): Promise<string> {
  const request = await cluster.client.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 },
  });
  type Kubeconfig = { users: Array<{ name: string; user: Record<string, unknown> }>; contexts: Array<{ context: { user: string } }> };
  const admin = load(await readFile(cluster.kubeconfigPath, 'utf8')) as Kubeconfig;
  const config: Kubeconfig = {
    ...admin,
    users: [{ name: `${namespace}-${name}`, user: { token: request.status.token } }],
    contexts: admin.contexts.map((c) => ({ ...c, context: { ...c.context, user: `${namespace}-${name}` } })),
  };
  const path = join(dir, `${namespace}-${name}.kubeconfig`);
  await writeFile(path, dump(config), { mode: 0o600 });
  return path;
}

/** kubectl with that kubeconfig (the harness's kubectl, a cache dir under `dir`). */
export const kubectlWith = (kubeconfig: string, dir: string) => (args: string[], input?: string) =>
  runProcess(join(process.env.FERRY_TEST_BIN_DIR!, 'kubectl'), ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'kubectl-cache'), ...args], input);
