// Finds the Go-built tools the benchmark runs (kwok, kube-scheduler, Argo's workflow-controller),
// building each once through its script under test/tools/ (cached by version outside the repo).
import { join } from 'node:path';
import { ensureBinaries, runBuildScript } from '../../test/harness/binaries.ts';

const TOOLS = join(import.meta.dirname, '..', '..', 'test', 'tools');


export async function ensureKwok(): Promise<string> {
  return join(await runBuildScript(join(TOOLS, 'kwok', 'build-kwok.sh')), 'kwok');
}

export async function ensureKubeScheduler(): Promise<string> {
  return join(await ensureBinaries(['kube-scheduler']), 'kube-scheduler');
}

/** Argo's controller binary and the directory of the CRDs of the same release. */
export async function ensureArgo(): Promise<{ controller: string; crdDir: string; version: string }> {
  const dir = await runBuildScript(join(TOOLS, 'argo', 'build-argo.sh'));
  const version = dir.split('-').pop() ?? 'unknown';
  return { controller: join(dir, 'workflow-controller'), crdDir: join(dir, 'crds'), version };
}
