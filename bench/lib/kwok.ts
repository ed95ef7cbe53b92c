// Simulated nodes and Pod lifecycles for the benchmark: writes a KWOK configuration with our own
// Stages (no Stage CRDs needed: kwok reads them from --config), creates the fake Nodes and runs
// kwok out of cluster against the harness API server. A Pod on a fake Node goes
//   Pending --startDelayMs--> Running --stepDelayMs--> Succeeded (or Failed, for failureFraction)
// and a Pod being deleted is removed at once, which is what a kubelet would do for these Pods.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import type { KubeClient } from '../../operator/kube/client.ts';
import type { Resource } from '../../operator/kube/resources.ts';

export const NODES: Resource = { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false };
/** The label that tells kwok which Nodes are its to play (and keeps it off any real Node). */
export const KWOK_NODE_LABEL = 'ferry.dev/bench-node';

export interface PodLifecycle {
  /** Scheduled → Running (init containers done, main containers running). */
  startDelayMs: number;
  /** Running → Succeeded or Failed. */
  stepDelayMs: number;
  /** Share of Pods that end Failed (main containers exit 1), 0..1, drawn by kwok per Pod. */
  failureFraction: number;
}

export interface Kwok {
  pid: number;
  stop(): Promise<void>;
}

const NOW = '{{ $now := Now }}';

/** Containers as a kubelet reports them: terminated (code, reason) or running. */
function containerStatuses(list: string, state: 'running' | { exitCode: number; reason: string }, ready: boolean): string {
  const body = state === 'running'
    ? `    running:
      startedAt: {{ $now | Quote }}`
    : `    terminated:
      exitCode: ${state.exitCode}
      reason: ${state.reason}
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}`;
  return `{{ range .spec.${list} }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: ${ready}
  restartCount: 0
  started: ${state === 'running'}
  state:
${body}
{{ end }}`;
}

function condition(type: string, status: 'True' | 'False', reason = ''): string {
  return `- lastTransitionTime: {{ $now | Quote }}
  status: "${status}"
  type: ${type}${reason ? `\n  reason: ${reason}` : ''}`;
}

function podStage(name: string, selector: object[], delayMs: number, statusTemplate: string, weight?: number): object {
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Pod' },
      selector: { matchExpressions: selector },
      ...(weight !== undefined ? { weight } : {}),
      ...(delayMs > 0 ? { delay: { durationMilliseconds: delayMs } } : {}),
      next: { statusTemplate },
    },
  };
}

/** The Stage objects of the simulated kubelet (see the header). */
export function stages(lifecycle: PodLifecycle): object[] {
  const alive = { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' };
  const start = podStage(
    'bench-pod-start',
    [alive, { key: '.status.startTime', operator: 'DoesNotExist' }],
    lifecycle.startDelayMs,
    `${NOW}
conditions:
${condition('Initialized', 'True')}
${condition('Ready', 'True')}
${condition('ContainersReady', 'True')}
{{ if .spec.initContainers }}
initContainerStatuses:
${containerStatuses('initContainers', { exitCode: 0, reason: 'Completed' }, true)}
{{ end }}
containerStatuses:
${containerStatuses('containers', 'running', true)}
phase: Running
startTime: {{ $now | Quote }}
`,
  );
  const running = [alive, { key: '.status.phase', operator: 'In', values: ['Running'] }];
  const end = (exitCode: number, reason: string, phase: string) => `${NOW}
conditions:
${condition('Ready', 'False', 'PodCompleted')}
${condition('ContainersReady', 'False', 'PodCompleted')}
containerStatuses:
${containerStatuses('containers', { exitCode, reason }, false)}
phase: ${phase}
`;
  const scale = 10_000;
  const failWeight = Math.round(lifecycle.failureFraction * scale);
  const result: object[] = [start];
  if (failWeight < scale) {
    result.push(podStage('bench-pod-succeed', running, lifecycle.stepDelayMs, end(0, 'Completed', 'Succeeded'), scale - failWeight));
  }
  if (failWeight > 0) {
    result.push(podStage('bench-pod-fail', running, lifecycle.stepDelayMs, end(1, 'Error', 'Failed'), failWeight));
  }
  // A kubelet removes a deleted Pod once its containers stop; these have nothing to stop.
  result.push({
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name: 'bench-pod-delete' },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Pod' },
      selector: { matchExpressions: [{ key: '.metadata.deletionTimestamp', operator: 'Exists' }] },
      next: { finalizers: { empty: true }, delete: true },
    },
  });
  // Nodes: Ready with room for any number of Pods (kwok's own node-initialize stage, trimmed).
  result.push({
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name: 'bench-node-initialize' },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Node' },
      selector: { matchExpressions: [{ key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: 'NotIn', values: ['True'] }] },
      next: {
        statusTemplate: `${NOW}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
allocatable: {cpu: 1k, memory: 1Ti, pods: 1M}
capacity: {cpu: 1k, memory: 1Ti, pods: 1M}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: kwok
  containerRuntimeVersion: kwok
phase: Running
`,
      },
    },
  });
  return result;
}

export async function writeKwokConfig(path: string, lifecycle: PodLifecycle): Promise<void> {
  const configuration = {
    apiVersion: 'config.kwok.x-k8s.io/v1alpha1',
    kind: 'KwokConfiguration',
    // Pod stage patches in flight at once (default 4); kwok must never be the bottleneck.
    options: { podPlayStageParallelism: 16, nodePlayStageParallelism: 2 },
  };
  await writeFile(path, [configuration, ...stages(lifecycle)].map((doc) => dump(doc, { lineWidth: -1 })).join('---\n'));
}

export async function createNodes(client: KubeClient, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `kwok-node-${i}`);
  for (const name of names) {
    await client.create(NODES, undefined, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { [KWOK_NODE_LABEL]: 'kwok', 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', type: 'kwok' }, annotations: { 'kwok.x-k8s.io/node': 'fake' } },
      spec: {},
    });
    // The API server's TaintNodesByCondition admission taints every new Node not-ready; the node
    // lifecycle controller (kube-controller-manager, not run here) would lift it once kwok says Ready.
    await client.mergePatch(NODES, undefined, name, { spec: { taints: null } });
  }
  return names;
}

export async function startKwok(options: { bin: string; kubeconfigPath: string; workDir: string; lifecycle: PodLifecycle }): Promise<Kwok> {
  const configPath = join(options.workDir, 'kwok.yaml');
  await writeKwokConfig(configPath, options.lifecycle);
  const logPath = join(options.workDir, 'kwok.log');
  const fd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(options.bin, [
    `--config=${configPath}`,
    `--kubeconfig=${options.kubeconfigPath}`,
    `--manage-nodes-with-label-selector=${KWOK_NODE_LABEL}=kwok`,
    // Pod IPs are never used here; a wide range keeps kwok from running out with many Pods.
    '--cidr=10.128.0.0/10',
    '--node-ip=10.127.0.1',
  ], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return trackProcess(child, 'kwok', logPath);
}

/** Wraps a child: stop() is SIGTERM, then SIGKILL after 10 s; the child dies with us. */
export function trackProcess(child: ChildProcess, name: string, logPath: string): Kwok {
  let done = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => { done = true; resolve(); });
    child.once('error', (err) => { done = true; process.stderr.write(`${name} failed to start: ${err.message} (log ${logPath})\n`); resolve(); });
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  return {
    pid: child.pid ?? -1,
    async stop() {
      process.off('exit', killOnExit);
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
