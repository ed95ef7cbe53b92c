// The benchmark's cluster: the harness's etcd + kube-apiserver, Ferry's CRDs, the real
// kube-scheduler (step Pods name no Node) and KWOK playing the kubelet of a few fake Nodes.
// Nothing here is a controller under test; everything here is shared by the controllers.
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ApiServer } from '../../test/harness/api-server.ts';
import { httpsGet, startApiServer } from '../../test/harness/api-server.ts';
import { installCrds } from '../../test/harness/crds.ts';
import type { KubeClient } from '../../operator/kube/client.ts';
import { NAMESPACES, resourcePath, type Resource } from '../../operator/kube/resources.ts';
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
  /** Deletes every object of these kinds in a namespace (there is no namespace controller here) and waits until they are gone. */
  emptyNamespace(namespace: string, resources: Resource[]): Promise<void>;
  /**
   * Compacts etcd to its current revision and defragments it. The harness's etcd has a 256 MiB
   * quota, which thousands of runs (their status history, Pods and Events) fill.
   */
  compactEtcd(): Promise<{ beforeMiB: number; afterMiB: number }>;
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
    const controlPlanePids = await pidsWithArgument(server.workDir, ['kube-apiserver', 'etcd']);
    const etcdUrl = await etcdUrlOf(controlPlanePids);
    log(`cluster up: ${options.nodes} KWOK nodes, kube-scheduler, logs in ${server.workDir}`);
    return {
      server,
      client,
      kwokPid: kwok.pid,
      schedulerPid: scheduler.pid,
      controlPlanePids,
      async apiRequests() {
        const { status, body } = await httpsGet(server.url, '/metrics', server.token);
        if (status !== 200) throw new Error(`GET /metrics of the API server: ${status}`);
        return parseMetrics(body, ['apiserver_request_total']);
      },
      async createNamespace(name: string) {
        await client.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      },
      async emptyNamespace(namespace: string, resources: Resource[]) {
        // Deleting is writing: a graceful Pod deletion is an update, then a delete, each a new
        // revision, and 10k of them fill etcd's quota. So Pods go at once (grace period 0; no
        // kubelet runs them), etcd is compacted after each kind, and a full etcd is compacted
        // and the deletion taken up again. Deleting 10k objects takes the API server longer than
        // the client waits: a timed-out request has deleted some, and the next takes up the rest.
        const options = { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', gracePeriodSeconds: 0 };
        const retriable = (err: unknown) => /database space exceeded|timeout|aborted/i.test(String(err));
        for (const r of resources) {
          for (let attempt = 1; ; attempt++) {
            try {
              await client.request('DELETE', resourcePath(r, namespace), options);
              break;
            } catch (err) {
              if (attempt >= 40 || !retriable(err)) throw err;
              await compactEtcd(etcdUrl);
            }
          }
          await compactEtcd(etcdUrl);
        }
        await waitFor(`namespace ${namespace} to be emptied`, 600_000, async () => {
          for (const r of resources) if ((await client.list(r, namespace)).items.length > 0) return false;
          return true;
        });
      },
      compactEtcd: () => compactEtcd(etcdUrl),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** etcd's client URL, from the API server's --etcd-servers. */
async function etcdUrlOf(pids: number[]): Promise<string> {
  for (const pid of pids) {
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const flag = args.find((a) => a.startsWith('--etcd-servers='));
    if (flag) return flag.slice('--etcd-servers='.length).split(',')[0]!;
  }
  throw new Error('cannot find the API server\'s --etcd-servers');
}

/** Through etcd's JSON gateway: status → compact (physical) → defragment → clear a NOSPACE alarm. */
async function compactEtcd(url: string): Promise<{ beforeMiB: number; afterMiB: number }> {
  const call = async (path: string, body: object) => {
    const response = await fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
    if (!response.ok) throw new Error(`etcd ${path}: ${response.status} ${await response.text()}`);
    return response.json() as Promise<{ header?: { revision?: string }; dbSize?: string; alarms?: unknown[] }>;
  };
  const before = await call('/v3/maintenance/status', {});
  await call('/v3/kv/compaction', { revision: before.header?.revision, physical: true }).catch((err: unknown) => {
    if (!String(err).includes('compacted')) throw err; // the API server compacted it already
  });
  await call('/v3/maintenance/defragment', {});
  const alarms = await call('/v3/maintenance/alarm', { action: 'GET' });
  if ((alarms.alarms ?? []).length > 0) await call('/v3/maintenance/alarm', { action: 'DEACTIVATE', memberID: '0', alarm: 'NOSPACE' });
  const after = await call('/v3/maintenance/status', {});
  return { beforeMiB: Number(before.dbSize ?? NaN) / 1048576, afterMiB: Number(after.dbSize ?? NaN) / 1048576 };
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
