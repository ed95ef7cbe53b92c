// Dev entry point: `node test/harness/cli.ts up [crd-dir]` runs a local etcd + kube-apiserver
// with Ferry's CRDs (default: the repo's crds/) installed, prints `export KUBECONFIG=...`,
// and tears everything down on SIGINT/SIGTERM.
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { startApiServer } from './api-server.ts';
import { installCrds } from './crds.ts';

const defaultCrdDir = fileURLToPath(new URL('../../crds', import.meta.url));

async function up(crdDir: string): Promise<void> {
  const server = await startApiServer({ log: (line) => console.error(line) });
  try {
    const files = await readdir(crdDir).catch(() => []);
    // kubectl apply fails on a directory with no manifests, so skip an empty crds/.
    if (files.some((f) => /\.ya?ml$/.test(f))) {
      await installCrds(server, crdDir);
      console.error(`installed CRDs from ${crdDir}`);
    }
  } catch (err) {
    await server.stop();
    throw err;
  }
  console.log(`export KUBECONFIG=${server.kubeconfigPath}`);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  console.error(`${signal}: stopping API server`);
  await server.stop();
}

const command = process.argv[2];
if (command === 'up') {
  await up(process.argv[3] ?? defaultCrdDir);
} else {
  console.error('usage: node test/harness/cli.ts up [crd-dir]');
  process.exitCode = 2;
}
