// The benchmark's cluster: the harness's etcd + kube-apiserver, Ferry's CRDs, the real
// kube-scheduler (step Pods name no Node) and KWOK playing the kubelet of a few fake Nodes.
// Nothing here is a controller under test; everything here is shared by the controllers.
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ApiServer } from '../../test/harness/api-server.ts';
import { httpsGet, startApiServer } from '../../test/harness/api-server.ts';
import { installCrds } from '../../test/harness/crds.ts';
import type { KubeClient } from '../../operator/kube/client.ts';
import { NAMESPACES } from '../../operator/kube/resources.ts';
import { BenchKubeClient } from './bench-client.ts';
import { createNodes, NODES, startKwok, type Kwok, type PodLifecycle } from './kwok.ts';
import { parseMetrics, type Sample } from './prom.ts';
import { startScheduler } from './scheduler.ts';
import { ensureKubeScheduler, ensureKwok } from './tools.ts';

export interface BenchCluster {
  server: ApiServer;
  /** The bench's own client: generous limits, so the bench never throttles what it measures. */
  client: KubeClient;
  kwokPid: number;
  schedulerPid: number;
  /** kube-apiserver and etcd: their CPU per step is the load a controller puts on the control plane. */
  controlPlanePids: number[];
  /** The API server's request counters. */
  apiRequests(): Promise<Sample[]>;
  createNamespace(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  lifecycle: PodLifecycle;
  nodes: number;
  log: (line: string) => void;
}

export async function startBenchCluster(options: ClusterOptions): Promise<BenchCluster> {
  const { log } = options;
  const [kwokBin, schedulerBin] = [await ensureKwok(), await ensureKubeScheduler()];
  const server = await startApiServer({ log });
  const stops: Array<() => Promise<void>> = [() => server.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    await installCrds(server);
    const client = new BenchKubeClient(server.kubeconfigPath);
    const kwok: Kwok = await startKwok({ bin: kwokBin, kubeconfigPath: server.kubeconfigPath, workDir: server.workDir, lifecycle: options.lifecycle });
    stops.push(() => kwok.stop());
    const nodeNames = await createNodes(client, options.nodes);
    await waitFor(`${options.nodes} KWOK nodes Ready (see ${server.workDir}/kwok.log)`, 60_000, async () => {
      const { items } = await client.list<{ metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>(NODES);
      const ready = items.filter((n) => nodeNames.includes(n.metadata.name) && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      return ready.length === nodeNames.length;
    });
    const scheduler = await startScheduler({ bin: schedulerBin, kubeconfigPath: server.kubeconfigPath, workDir: server.workDir });
    stops.push(() => scheduler.stop());
    log(`cluster up: ${options.nodes} KWOK nodes, kube-scheduler, logs in ${server.workDir}`);
    return {
      server,
      client,
      kwokPid: kwok.pid,
      schedulerPid: scheduler.pid,
      controlPlanePids: await pidsWithArgument(server.workDir, ['kube-apiserver', 'etcd']),
      async apiRequests() {
        const { status, body } = await httpsGet(server.url, '/metrics', server.token);
        if (status !== 200) throw new Error(`GET /metrics of the API server: ${status}`);
        return parseMetrics(body, ['apiserver_request_total']);
      },
      async createNamespace(name: string) {
        await client.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Processes named `names` whose command line mentions `argument` (the harness's work dir). */
async function pidsWithArgument(argument: string, names: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const [bin = '', ...args] = cmdline.split('\0');
    if (names.includes(basename(bin)) && args.some((a) => a.includes(argument))) pids.push(Number(entry));
  }
  return pids;
}

export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
