// Runs the real kube-scheduler against the harness API server, so step Pods (which name no
// Node) are bound to the KWOK Nodes the way a cluster binds them. Its client rate limit is
// raised: the scheduler is scenery here, and must never be what the benchmark measures.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { trackProcess, type Kwok } from './kwok.ts';

export async function startScheduler(options: { bin: string; kubeconfigPath: string; workDir: string }): Promise<Kwok> {
  const configPath = join(options.workDir, 'kube-scheduler.yaml');
  await writeFile(configPath, dump({
    apiVersion: 'kubescheduler.config.k8s.io/v1',
    kind: 'KubeSchedulerConfiguration',
    clientConnection: { kubeconfig: options.kubeconfigPath, qps: 2000, burst: 4000 },
    leaderElection: { leaderElect: false },
  }));
  const logPath = join(options.workDir, 'kube-scheduler.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(options.bin, [
    `--config=${configPath}`,
    '--secure-port=0', // no health/metrics server: nothing here reads it, and no port to pick
    '--v=1',
  ], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return trackProcess(child, 'kube-scheduler', logPath);
}
