// Where the local cluster keeps everything: one work directory holding every daemon's
// config, data, logs and pid file, plus the network constants the configs share.
// Pure: no I/O. Read by cluster.ts (start), cleanup.ts (stop and crash recovery) and cli.ts.
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * The node's network. NOTE: everything the cluster serves to Pods (the API server, the
 * registry, the kubelet) listens on the bridge's gateway address: it is a local address
 * of this machine, reachable from the host and from every Pod, and from nowhere else.
 */
export const network = {
  bridge: 'ferry0',
  /** The CNI network name; host-local and libcni name their state after it. */
  cniNetwork: 'ferry-pods',
  podSubnet: '10.244.0.0/24',
  gateway: '10.244.0.1',
  serviceSubnet: '10.96.0.0/24',
  /** The `kubernetes` Service's ClusterIP: the first address of serviceSubnet. */
  kubernetesServiceIp: '10.96.0.1',
} as const;

export const nodeName = 'ferry-node';

/** The kernel settings the kubelet and kube-proxy may change; saved before start, restored at stop. */
export const sysctls = [
  'net/ipv4/ip_forward',
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/ipv4/conf/all/route_localnet',
] as const;

/**
 * Machine-wide, outside any work dir: which work dir the running cluster lives in. A node
 * has one bridge, one set of KUBE-* iptables chains and one kubepods cgroup tree, so only
 * one cluster runs per machine.
 */
export const ownerFile = '/run/ferry-cluster/owner.json';

/** Fixed by containerd 1.6 and its runc shim, not configurable: checked and cleaned by id. */
export const containerdShimSocketDir = '/run/containerd/s';
export const runcRoot = '/run/containerd/runc/k8s.io';
/** libcni's result cache (not configurable through containerd 1.6's CRI plugin). */
export const cniCacheDir = '/var/lib/cni/results';
/** The kubelet keeps symlinks to container logs here whatever podLogsDir says. */
export const containerLogLinks = '/var/log/containers';

export type Layout = ReturnType<typeof layoutOf>;

export function defaultWorkDir(): string {
  const fromEnv = process.env.FERRY_CLUSTER_DIR;
  if (fromEnv) return resolve(fromEnv);
  return join(process.env.FERRY_CACHE ?? join(homedir(), '.cache', 'ferry'), 'cluster');
}

export function layoutOf(workDir: string) {
  const dir = resolve(workDir);
  const containerd = join(dir, 'containerd');
  const kubelet = join(dir, 'kubelet');
  const postgresDir = join(dirname(ownerFile), 'postgres');
  return {
    dir,
    pidDir: join(dir, 'pids'),
    logDir: join(dir, 'logs'),
    pki: join(dir, 'pki'),
    stateFile: join(dir, 'state.json'),
    sysctlSnapshot: join(dir, 'sysctls.json'),
    kubeconfig: join(dir, 'kubeconfig'),
    tokenFile: join(dir, 'pki', 'tokens.csv'),
    etcdData: join(dir, 'etcd'),
    containerd: {
      dir: containerd,
      config: join(containerd, 'config.toml'),
      root: join(containerd, 'root'),
      state: join(containerd, 'state'),
      socket: join(containerd, 'containerd.sock'),
      hostsDir: join(containerd, 'certs.d'),
      optDir: join(containerd, 'opt'),
    },
    cni: {
      confDir: join(dir, 'cni', 'net.d'),
      ipamDir: join(dir, 'cni', 'ipam'),
    },
    kubelet: {
      root: kubelet,
      config: join(dir, 'kubelet-config.yaml'),
      certDir: join(dir, 'kubelet-pki'),
      podLogs: join(dir, 'pod-logs'),
    },
    kubeProxyConfig: join(dir, 'kube-proxy-config.yaml'),
    registry: {
      dir: join(dir, 'registry'),
      data: join(dir, 'registry', 'data'),
      config: join(dir, 'registry', 'config.yml'),
      portFile: join(dir, 'registry', 'port'),
    },
    /**
     * PostgreSQL for the metadata store (postgres.ts), started on demand, disposable like etcd.
     * Outside the work dir: the server runs as the postgres user, who cannot enter /root.
     */
    postgres: {
      dir: postgresDir,
      data: join(postgresDir, 'data'),
      socketDir: join(postgresDir, 'socket'),
      urlFile: join(postgresDir, 'url'),
    },
    /** The file:// artifact store the demo's PersistentVolume points at (hostPath). */
    artifacts: join(dir, 'artifacts'),
    /** Everything start() recreates; the registry's data survives restarts on purpose. */
    ephemeral: ['pids', 'pki', 'etcd', 'containerd', 'cni', 'kubelet', 'kubelet-pki', 'pod-logs',
      'kubelet-config.yaml', 'kube-proxy-config.yaml', 'kubeconfig', 'state.json', 'kubectl-cache', 'artifacts'].map((p) => join(dir, p)).concat(postgresDir),
  };
}
