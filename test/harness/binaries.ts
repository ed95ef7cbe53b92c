// Locates the pinned kube-apiserver / kubectl / etcd binaries for tests, building them
// once via test/tools/build-binaries.sh (cached outside the repo; later calls are instant).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const buildScript = fileURLToPath(new URL('../tools/build-binaries.sh', import.meta.url));

/**
 * Runs a build script that builds what is missing (cached by version outside the repo) and
 * prints its cache directory on its last stdout line; returns that directory. stderr is
 * inherited, so a first-time Go build (minutes) shows its progress.
 */
export async function runBuildScript(script: string, args: string[] = []): Promise<string> {
  const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const dir = stdout.trim().split('\n').pop()?.trim();
  if (code !== 0 || !dir) throw new Error(`${script} ${args.join(' ')} failed (exit ${code}); stdout: ${stdout.trim()}`);
  return dir;
}

/** Builds (if needed) the named binaries, default all three, and returns their directory. */
export async function ensureBinaries(names: string[] = []): Promise<string> {
  return runBuildScript(buildScript, names);
}
