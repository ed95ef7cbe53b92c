// A real single-node Kubernetes cluster on this machine, made of the pinned binaries
// (test/tools/build-binaries.sh) and Debian's containerd, runc, CNI plugins and
// docker-registry: etcd → kube-apiserver → containerd → kube-controller-manager,
// kube-scheduler, kube-proxy, kubelet. startCluster() first sweeps whatever an earlier run
// left behind (cleanup.ts), so it also works after a crash; stop() sweeps again.
// Needs root on Linux. Design and trade-offs: docs/adr/0006-local-cluster.md.
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpsGet } from '../harness/api-server.ts';
import { ensureBinaries } from '../harness/binaries.ts';
import { freePorts } from '../harness/ports.ts';
import { ensureDebianPackage } from '../harness/registry.ts';
import { containerdConfig, cniConflist, kubeconfig, kubeletConfig, kubeProxyConfig, registryHosts } from './configs.ts';
import { foreignState, readOwner, snapshotSysctls, teardown, type Owner, type TeardownReport } from './cleanup.ts';
import { ensureProgramImage } from './images.ts';
import { defaultWorkDir, layoutOf, network, nodeName, ownerFile, sysctls, type Layout } from './layout.ts';
import { createPki } from './pki.ts';
import { recordedDaemons, run, runOk, signal, startDaemon, tail, type Daemon, type KubectlResult } from './processes.ts';
import { firstFreePort, startClusterRegistry } from './registry.ts';

export type { TeardownReport };

export interface LocalCluster {
  kubeconfigPath: string;
  /** host:port of the local registry (plain http), reachable from the host and from Pods. */
  registry: string;
  /** The API server's URL, e.g. https://10.244.0.1:6443. */
  server: string;
  workDir: string;
  binDir: string;
  nodeName: string;
  /** The locally built images the cluster itself uses. */
  images: { pause: string; probe: string };
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /** Stops everything and removes every process, mount, interface and rule; keeps registry data. */
  stop(): Promise<TeardownReport>;
}

export interface StartClusterOptions {
  /** Defaults to $FERRY_CLUSTER_DIR or ~/.cache/ferry/cluster. Registry data is kept there across restarts. */
  workDir?: string;
  log?: (line: string) => void;
  /** Leave the daemons running when this process exits (`cli.ts up --detach`); `down` stops them. */
  detach?: boolean;
}

/** Debian packages the cluster needs, by a file each installs. */
export const debianPackages: Array<[binary: string, pkg: string]> = [
  ['/usr/bin/containerd', 'containerd'],
  ['/usr/sbin/runc', 'runc'],
  ['/usr/lib/cni/bridge', 'containernetworking-plugins'],
  ['/usr/bin/docker-registry', 'docker-registry'],
  ['/usr/bin/buildah', 'buildah'],
  ['/usr/sbin/iptables', 'iptables'],
  ['/usr/bin/openssl', 'openssl'],
  ['/usr/sbin/ip', 'iproute2'],
];

export const kubernetesBinaries = ['etcd', 'kube-apiserver', 'kubectl', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy', 'kubelet'];

const readyTimeoutMs = 180_000;

export async function startCluster(options: StartClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  assertCanRun();
  for (const [binary, pkg] of debianPackages) await ensureDebianPackage(binary, pkg);
  const binDir = await ensureBinaries(kubernetesBinaries);
  const bin = (name: string): string => join(binDir, name);
  const layout = layoutOf(options.workDir ?? defaultWorkDir());
  const started = Date.now();
  const phase = (what: string): void => log(`${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);

  await claimMachine(layout, log);
  const leftovers = await teardown(layout);
  if (leftovers.removed.length > 0) log(`removed leftovers of an earlier run: ${leftovers.removed.join('; ')}`);
  if (leftovers.failed.length > 0) throw new Error(`cannot clean up an earlier run in ${layout.dir}:\n${leftovers.failed.join('\n')}`);
  const foreign = await foreignState();
  if (foreign.length > 0) {
    throw new Error(`this machine already has Kubernetes node state that no Ferry cluster record explains; stop that Kubernetes (or, if it was a Ferry cluster whose work dir is gone, remove it by hand):\n${foreign.map((f) => `- ${f}`).join('\n')}`);
  }
  if (Buffer.byteLength(layout.containerd.socket) > 100) {
    throw new Error(`the work dir ${layout.dir} is too long: containerd's socket path must fit a unix socket address (about 100 bytes); pick a shorter workDir`);
  }
  await writeOwner(layout);
  phase('machine clean');

  const daemons: Daemon[] = [];
  const killOnExit = (): void => { for (const d of daemons) if (d.exitCode === undefined) signal(d.pid, 'SIGKILL'); };
  if (!options.detach) process.on('exit', killOnExit);
  let stopping: Promise<TeardownReport> | undefined;
  const stop = (): Promise<TeardownReport> => (stopping ??= (async () => {
    const report = await teardown(layout, log);
    process.off('exit', killOnExit);
    return report;
  })());

  try {
    await rm(layout.logDir, { recursive: true, force: true });
    for (const dir of [layout.logDir, layout.pidDir, layout.containerd.hostsDir, layout.cni.confDir, layout.cni.ipamDir, layout.kubelet.root, layout.kubelet.podLogs, layout.kubelet.certDir]) {
      await mkdir(dir, { recursive: true });
    }
    await snapshotSysctls(layout, sysctls);
    // Service traffic to Pods is DNATed and then routed across the bridge.
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
    await createBridge();
    const pki = await createPki(layout);
    phase('bridge and certificates ready');

    const [etcdClient, etcdPeer, kcmPort, schedulerPort, kubeletHealthz, proxyHealthz, proxyMetrics] = await freePorts(7) as [number, number, number, number, number, number, number];
    const apiPort = await firstFreePort(network.gateway, [6443]);
    const server = `https://${network.gateway}:${apiPort}`;
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;

    const etcd = await startDaemon(layout, 'etcd', bin('etcd'), [
      '--name=ferry-local', `--data-dir=${layout.etcdData}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=ferry-local=${peerUrl}`,
      '--unsafe-no-fsync=true', // the cluster is rebuilt at every start: its data is disposable
      `--quota-backend-bytes=${1024 * 1024 * 1024}`,
    ]);
    daemons.push(etcd);
    const registry = await startClusterRegistry(layout);
    daemons.push(registry.daemon);
    phase(`registry on ${registry.host}`);
    // Images build while the control plane comes up.
    const images = Promise.all([ensureProgramImage(registry.host, 'pause', log), ensureProgramImage(registry.host, 'probe', log)]);
    images.catch(() => {}); // awaited below; don't let an early failure go unhandled meanwhile

    await waitFor('etcd', [etcd], async () => (await fetch(`${etcdUrl}/health`)).status === 200);
    const apiserver = await startDaemon(layout, 'kube-apiserver', bin('kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${network.gateway}`, `--advertise-address=${network.gateway}`, `--secure-port=${apiPort}`,
      `--tls-cert-file=${pki.apiserverCert}`, `--tls-private-key-file=${pki.apiserverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${layout.tokenFile}`,
      '--authorization-mode=Node,RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
      `--service-cluster-ip-range=${network.serviceSubnet}`,
      `--kubelet-client-certificate=${pki.kubeletClientCert}`, `--kubelet-client-key=${pki.kubeletClientKey}`,
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      '--allow-privileged=true',
      '--enable-priority-and-fairness=false', // less startup work on small machines
      '--profiling=false',
    ]);
    daemons.push(apiserver);
    await waitFor('kube-apiserver /readyz', [etcd, apiserver], async () => (await httpsGet(server, '/readyz', pki.token, pki.caPem)).status === 200);
    await writeFile(layout.kubeconfig, kubeconfig(server, pki.caPem, pki.token), { mode: 0o600 });
    phase(`API server ready on ${server}`);

    const [pauseImage, probeImage] = await images;
    phase('images in the registry');
    await mkdir(join(layout.containerd.hostsDir, registry.host), { recursive: true });
    await writeFile(join(layout.containerd.hostsDir, registry.host, 'hosts.toml'), registryHosts(registry.host));
    await writeFile(layout.containerd.config, containerdConfig(layout, pauseImage));
    await writeFile(join(layout.cni.confDir, '10-ferry.conflist'), cniConflist(layout));
    const containerd = await startDaemon(layout, 'containerd', '/usr/bin/containerd', ['--config', layout.containerd.config]);
    daemons.push(containerd);
    const ctr = (args: string[]): Promise<string> => runOk('ctr', ['--address', layout.containerd.socket, '--namespace', 'k8s.io', ...args]);
    await waitFor('containerd', [containerd], async () => (await run('ctr', ['--address', layout.containerd.socket, 'version'])).code === 0);
    // The sandbox image in place before the first Pod; containerd could also pull it itself.
    await ctr(['images', 'pull', '--hosts-dir', layout.containerd.hostsDir, pauseImage]);
    phase('containerd ready, pause image imported');

    const kubeconfigFlags = [
      `--kubeconfig=${layout.kubeconfig}`, `--authentication-kubeconfig=${layout.kubeconfig}`, `--authorization-kubeconfig=${layout.kubeconfig}`,
      // No front proxy: don't look for its request-header CA (it would log an error every few seconds).
      '--authentication-skip-lookup=true',
    ];
    const controllerManager = await startDaemon(layout, 'kube-controller-manager', bin('kube-controller-manager'), [
      ...kubeconfigFlags, '--leader-elect=false', '--bind-address=127.0.0.1', `--secure-port=${kcmPort}`,
      // Service-account tokens (legacy Secrets) and kube-root-ca.crt: the same key and CA as the API server.
      `--service-account-private-key-file=${pki.saKey}`, `--root-ca-file=${pki.caCert}`,
      `--cluster-signing-cert-file=${pki.caCert}`, `--cluster-signing-key-file=${pki.caKey}`,
      '--controllers=*', // the defaults, garbage collector included
      '--profiling=false',
    ]);
    const scheduler = await startDaemon(layout, 'kube-scheduler', bin('kube-scheduler'), [
      ...kubeconfigFlags, '--leader-elect=false', '--bind-address=127.0.0.1', `--secure-port=${schedulerPort}`, '--profiling=false',
    ]);
    await writeFile(layout.kubeProxyConfig, kubeProxyConfig(layout, { healthz: proxyHealthz, metrics: proxyMetrics }));
    const proxy = await startDaemon(layout, 'kube-proxy', bin('kube-proxy'), [`--config=${layout.kubeProxyConfig}`]);
    await writeFile(layout.kubelet.config, kubeletConfig(layout, { healthz: kubeletHealthz }));
    const kubelet = await startDaemon(layout, 'kubelet', bin('kubelet'), [
      `--config=${layout.kubelet.config}`,
      // A dev cluster: the kubelet uses the admin kubeconfig rather than a node identity
      // bootstrapped through CSRs (see ADR 0006).
      `--kubeconfig=${layout.kubeconfig}`,
      `--root-dir=${layout.kubelet.root}`, `--cert-dir=${layout.kubelet.certDir}`,
      `--hostname-override=${nodeName}`, `--node-ip=${network.gateway}`,
    ]);
    daemons.push(controllerManager, scheduler, proxy, kubelet);
    const all = [etcd, apiserver, containerd, controllerManager, scheduler, proxy, kubelet, registry.daemon];

    const get = async (path: string): Promise<unknown> => {
      const res = await httpsGet(server, path, pki.token, pki.caPem);
      return res.status === 200 ? JSON.parse(res.body) : undefined;
    };
    await waitFor(`node ${nodeName} Ready`, all, async () => {
      const node = await get(`/api/v1/nodes/${nodeName}`) as { status?: { conditions?: Array<{ type: string; status: string }> } } | undefined;
      return node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    });
    phase('node Ready');
    // Pods need their namespace's ServiceAccount and the CA ConfigMap (controller-manager),
    // and Services need kube-proxy's first sync.
    await waitFor('default ServiceAccount and kube-root-ca.crt', all, async () =>
      (await get('/api/v1/namespaces/default/serviceaccounts/default')) !== undefined &&
      (await get('/api/v1/namespaces/default/configmaps/kube-root-ca.crt')) !== undefined);
    await waitFor('kube-proxy /healthz', all, async () => (await fetch(`http://127.0.0.1:${proxyHealthz}/healthz`)).status === 200);
    phase('cluster ready');

    const cluster: LocalCluster = {
      kubeconfigPath: layout.kubeconfig,
      registry: registry.host,
      server,
      workDir: layout.dir,
      binDir,
      nodeName,
      images: { pause: pauseImage, probe: probeImage },
      kubectl: (args, input) => run(bin('kubectl'), ['--kubeconfig', layout.kubeconfig, '--cache-dir', join(layout.dir, 'kubectl-cache'), ...args], input),
      stop,
    };
    await writeFile(layout.stateFile, `${JSON.stringify({ ...cluster, kubectl: undefined, stop: undefined, startedAt: new Date(started).toISOString() }, null, 2)}\n`);
    return cluster;
  } catch (err) {
    const report = await stop();
    if (report.failed.length > 0) log(`cleanup after the failed start left: ${report.failed.join('; ')}`);
    throw err;
  }
}

/** The daemons a running cluster has; all of them must be alive to attach to it. */
const clusterDaemons = ['etcd', 'registry', 'kube-apiserver', 'containerd', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy', 'kubelet'];

/**
 * The cluster that already runs from this work dir (a detached `up`, or an earlier demo), or
 * undefined when it does not run or a daemon of it has died. Its stop() tears it down.
 */
export async function attachCluster(options: { workDir?: string; log?: (line: string) => void } = {}): Promise<LocalCluster | undefined> {
  const layout = layoutOf(options.workDir ?? defaultWorkDir());
  const alive = new Set((await recordedDaemons(layout)).map((d) => d.name));
  if (clusterDaemons.some((name) => !alive.has(name))) return undefined;
  const state = JSON.parse(await readFile(layout.stateFile, 'utf8').catch(() => 'null')) as Omit<LocalCluster, 'kubectl' | 'stop'> | null;
  if (state === null) return undefined;
  const kubectl = (args: string[], input?: string): Promise<KubectlResult> =>
    run(join(state.binDir, 'kubectl'), ['--kubeconfig', layout.kubeconfig, '--cache-dir', join(layout.dir, 'kubectl-cache'), ...args], input);
  const node = await kubectl(['get', 'node', state.nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  if (node.code !== 0 || node.stdout.trim() !== 'True') return undefined;
  let stopping: Promise<TeardownReport> | undefined;
  return { ...state, kubectl, stop: () => (stopping ??= teardown(layout, options.log ?? (() => {}))) };
}

/** attachCluster(), else a fresh detached start: the cluster outlives this process until `down`. */
export async function ensureCluster(options: { workDir?: string; log?: (line: string) => void } = {}): Promise<{ cluster: LocalCluster; reused: boolean }> {
  const running = await attachCluster(options);
  if (running) return { cluster: running, reused: true };
  return { cluster: await startCluster({ ...options, detach: true }), reused: false };
}

/** Throws unless this process can run a node: Linux, as root. */
export function assertCanRun(): void {
  if (process.platform !== 'linux') throw new Error(`the local cluster needs Linux (this is ${process.platform})`);
  if (process.getuid?.() !== 0) {
    throw new Error('the local cluster needs root: the kubelet, containerd and kube-proxy manage cgroups, mounts, network interfaces and iptables (run as root, e.g. sudo)');
  }
}

async function createBridge(): Promise<void> {
  // Made here, not by the CNI plugin on the first Pod: the API server and registry bind to
  // its address. The bridge plugin then adopts it (same name, same gateway address).
  await runOk('ip', ['link', 'add', network.bridge, 'type', 'bridge']);
  await runOk('ip', ['addr', 'add', `${network.gateway}/${network.podSubnet.split('/')[1]}`, 'dev', network.bridge]);
  await runOk('ip', ['link', 'set', network.bridge, 'up']);
}

/**
 * One cluster per machine. Another work dir's cluster that still runs is an error; one that
 * crashed is cleaned up. In our own work dir, a cluster held by another live process (an
 * attached `up`) is an error too; a detached or crashed one is replaced. Tests call it before
 * they record the machine's state as a baseline, since the cleanup restores sysctls.
 */
export async function claimMachine(layout: Layout, log: (line: string) => void): Promise<void> {
  const owner = await readOwner();
  if (owner === undefined || owner.pid === process.pid) return;
  const other = layoutOf(owner.workDir);
  const alive = await recordedDaemons(other);
  const ownerAlive = processStartTime(owner.pid) === owner.startTime;
  if (owner.workDir !== layout.dir && alive.length > 0) {
    throw new Error(`another local cluster runs from ${owner.workDir} (${alive.map((d) => `${d.name} ${d.pid}`).join(', ')}); stop it first: npm run cluster -- down --dir ${owner.workDir}`);
  }
  if (owner.workDir === layout.dir && ownerAlive && alive.length > 0) {
    throw new Error(`the local cluster in ${layout.dir} is run by process ${owner.pid}; stop that one (Ctrl-C, or npm run cluster -- down) first`);
  }
  if (owner.workDir !== layout.dir) {
    log(`cleaning up a stopped cluster in ${owner.workDir}`);
    const report = await teardown(other, log);
    if (report.failed.length > 0) throw new Error(`cannot clean up the cluster in ${owner.workDir}:\n${report.failed.join('\n')}`);
  }
}

async function writeOwner(layout: Layout): Promise<void> {
  await mkdir(dirname(ownerFile), { recursive: true });
  const owner: Owner = { workDir: layout.dir, pid: process.pid, startTime: processStartTime(process.pid) ?? '', startedAt: new Date().toISOString() };
  await writeFile(ownerFile, `${JSON.stringify(owner)}\n`);
}

/** The start time (in clock ticks since boot) of a process: with the pid, it names one process. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

async function waitFor(what: string, watched: Daemon[], probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const dead = watched.find((d) => d.exitCode !== undefined);
    if (dead) throw new Error(`${dead.name} exited (code ${dead.exitCode}) while waiting for ${what}; its log (${dead.logPath}):\n${await tail(dead.logPath)}`);
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      const logs = await Promise.all(watched.map(async (d) => `--- ${d.name} (${d.logPath}):\n${await tail(d.logPath, 15)}`));
      throw new Error(`timed out after ${readyTimeoutMs / 1000} s waiting for ${what}\n${logs.join('\n')}`);
    }
    await sleep(250);
  }
}
