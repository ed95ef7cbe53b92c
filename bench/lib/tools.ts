// Finds the Go-built tools the benchmark runs (kwok, kube-scheduler, Argo's workflow-controller),
// building each once through its script under test/tools/ (cached by version outside the repo).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureBinaries } from '../../test/harness/binaries.ts';

const TOOLS = join(import.meta.dirname, '..', '..', 'test', 'tools');

/** Runs a build script that prints its cache directory on its last stdout line; returns that directory. */
async function runBuildScript(script: string): Promise<string> {
  // stderr is inherited: a first build takes minutes and says so.
  const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const dir = stdout.trim().split('\n').pop()?.trim();
  if (code !== 0 || !dir) throw new Error(`${script} failed (exit ${code}); stdout: ${stdout.trim()}`);
  return dir;
}

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
