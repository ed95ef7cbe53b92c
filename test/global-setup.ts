// node --test global setup: one etcd + kube-apiserver for every integration test file, with
// the CRDs installed. Test files find it through FERRY_TEST_KUBECONFIG and each works in
// namespaces of its own, so files can run side by side.
import { startApiServer, type ApiServer } from './harness/api-server.ts';
import { installCrds } from './harness/crds.ts';

let server: ApiServer | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.FERRY_TEST_KUBECONFIG) return; // an API server given from outside
  server = await startApiServer({ log: (line) => process.stderr.write(`[harness] ${line}\n`) });
  try {
    await installCrds(server);
  } catch (err) {
    // The teardown does not run when the setup fails: stop what was started here.
    await server.stop();
    throw err;
  }
  process.env.FERRY_TEST_KUBECONFIG = server.kubeconfigPath;
  process.env.FERRY_TEST_BIN_DIR = server.binDir;
}

export async function globalTeardown(): Promise<void> {
  await server?.stop();
}
