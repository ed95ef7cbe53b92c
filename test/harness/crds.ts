// Installs CustomResourceDefinitions into a test API server with kubectl and waits
// until they are Established, so tests can create custom resources right away.
import type { ApiServer } from './api-server.ts';

export async function installCrds(server: ApiServer, dir = 'crds'): Promise<void> {
  const apply = await server.kubectl(['apply', '--server-side', '-f', dir]);
  if (apply.code !== 0) {
    throw new Error(`kubectl apply --server-side -f ${dir} failed (exit ${apply.code}): ${apply.stderr.trim()}`);
  }
  const wait = await server.kubectl(['wait', '--for', 'condition=established', '--timeout=60s', '-f', dir]);
  if (wait.code !== 0) {
    throw new Error(`waiting for CRDs in ${dir} to be established failed (exit ${wait.code}): ${wait.stderr.trim()}`);
  }
}
