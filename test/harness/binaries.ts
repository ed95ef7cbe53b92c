// Locates the pinned kube-apiserver / kubectl / etcd binaries for tests, building them
// once via test/tools/build-binaries.sh (cached outside the repo; later calls are instant).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const buildScript = fileURLToPath(new URL('../tools/build-binaries.sh', import.meta.url));

/** Builds (if needed) the named binaries, default all three, and returns their directory. */
export async function ensureBinaries(names: string[] = []): Promise<string> {
  // stderr is inherited so a first-time multi-minute Go build shows its progress.
  const child = spawn('bash', [buildScript, ...names], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const binDir = stdout.trim().split('\n').pop()?.trim();
  if (code !== 0 || !binDir) {
    throw new Error(`${buildScript} ${names.join(' ')} failed (exit ${code}); stdout: ${stdout.trim()}`);
  }
  return binDir;
}
