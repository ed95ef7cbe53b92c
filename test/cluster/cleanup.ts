// Stops the local cluster and removes every trace of it from the machine: its processes
// (daemons by pid file, containers by bundle path, shims by socket address), its mounts (all
// under the work dir), its pod cgroups, the bridge and its veths, the KUBE-* iptables chains,
// and the kernel settings the kubelet changed. The same sweep runs before each start, so a
// start after `kill -9` of everything finds a clean machine. Idempotent; never throws for
// something already gone.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, readlink, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Layout } from './layout.ts';
import { cniCacheDir, containerdShimSocketDir, containerLogLinks, network, ownerFile, runcRoot } from './layout.ts';
import { listProcesses, run, signal, stopRecorded, terminate } from './processes.ts';

export interface TeardownReport {
  /** One line per thing that was found and removed, for logs and tests. */
  removed: string[];
  /** Things that could not be removed: the caller reports them, the next start retries. */
  failed: string[];
}

type Log = (line: string) => void;

/** The order daemons stop in: controllers first, so nothing is recreated while the node drains. */
const controlLoops = ['kube-controller-manager', 'kube-scheduler'];
const nodeDaemons = ['kubelet', 'kube-proxy'];
const serverDaemons = ['postgres', 'kube-apiserver', 'etcd', 'registry'];

export async function teardown(layout: Layout, log: Log = () => {}): Promise<TeardownReport> {
  const report: TeardownReport = { removed: [], failed: [] };
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try { await fn(); } catch (err) { report.failed.push(`${what}: ${(err as Error).message}`); }
  };

  // Pid files, sockets, bundle paths and mounts name what is ours exactly; the bridge, the
  // KUBE-* chains and the kubepods cgroups are the machine's, so they are only swept when this
  // work dir ran a cluster (another Kubernetes on the machine keeps its own).
  const ranHere = await clusterRanFrom(layout);
  for (const name of controlLoops) await step(`stop ${name}`, () => stopDaemon(layout, name, 5_000, report));
  for (const name of nodeDaemons) await step(`stop ${name}`, () => stopDaemon(layout, name, 10_000, report));
  await step('remove containers', () => removeContainers(layout, report));
  await step('stop containerd', () => stopDaemon(layout, 'containerd', 10_000, report));
  await step('stop shims', () => stopShims(layout, report));
  if (ranHere) await step('remove pod cgroups', () => removePodCgroups(report));
  for (const name of serverDaemons) await step(`stop ${name}`, () => stopDaemon(layout, name, 10_000, report));
  await step('unmount', () => unmountUnder(layout.dir, report));
  if (ranHere) {
    await step('remove network', () => removeNetwork(report));
    await step('remove iptables rules', () => removeIptablesRules(report));
  }
  await step('remove files', () => removeFiles(layout, report));
  await step('restore sysctls', () => restoreSysctls(layout, report));
  await step('remove work files', async () => {
    for (const path of layout.ephemeral) await rm(path, { recursive: true, force: true });
  });
  await step('release owner file', () => releaseOwner(layout));
  for (const line of report.removed) log(`cleanup: ${line}`);
  for (const line of report.failed) log(`cleanup FAILED: ${line}`);
  return report;
}

/** Whether a cluster was (or may still be) running from this work dir. */
async function clusterRanFrom(layout: Layout): Promise<boolean> {
  const pids = await readdir(layout.pidDir).catch(() => [] as string[]);
  return pids.length > 0 || (await readOwner())?.workDir === layout.dir;
}

/**
 * What a start would collide with that no Ferry cluster record explains: the bridge, pod
 * cgroups or KUBE-* chains of another Kubernetes on this machine (or of a Ferry cluster
 * whose work dir was deleted). Empty when the machine is free.
 */
export async function foreignState(): Promise<string[]> {
  const found: string[] = [];
  if ((await run('ip', ['link', 'show', 'dev', network.bridge])).code === 0) found.push(`network interface ${network.bridge} exists (ip link del ${network.bridge})`);
  for (const mount of cgroupMounts()) {
    if (existsSync(join(mount, 'kubepods'))) { found.push(`cgroup ${join(mount, 'kubepods')} exists (a kubelet runs or ran here)`); break; }
  }
  const saved = await run('iptables-save', []).catch(() => undefined);
  if (saved !== undefined && /^:KUBE-/m.test(saved.stdout)) found.push('iptables has KUBE-* chains (a kube-proxy or kubelet runs or ran here)');
  return found;
}

async function stopDaemon(layout: Layout, name: string, graceMs: number, report: TeardownReport): Promise<void> {
  const pidFile = join(layout.pidDir, `${name}.pid`);
  if (!existsSync(pidFile)) return;
  const before = readFileSync(pidFile, 'utf8');
  await stopRecorded(layout, name, graceMs);
  report.removed.push(`process ${name} (${(JSON.parse(before) as { pid: number }).pid})`);
}

interface RuncContainer { id: string; pid: number; status: string; bundle: string }

/**
 * Every container whose bundle lives under this cluster's containerd state: killed and
 * deleted with runc itself, which also removes its cgroups and runc state. Works with
 * containerd dead or alive (it then sees the tasks exit).
 */
async function removeContainers(layout: Layout, report: TeardownReport): Promise<void> {
  if (!existsSync(runcRoot)) return;
  const listed = await run('runc', ['--root', runcRoot, 'list', '--format', 'json']);
  if (listed.code !== 0) throw new Error(`runc list: ${listed.stderr.trim()}`);
  const containers = (JSON.parse(listed.stdout.trim() || 'null') as RuncContainer[] | null) ?? [];
  const ours = containers.filter((c) => c.bundle.startsWith(`${layout.containerd.state}/`));
  // Application containers before sandboxes (pause), so nothing is left without its namespaces.
  for (const c of ours) {
    const deleted = await run('runc', ['--root', runcRoot, 'delete', '--force', c.id]);
    if (deleted.code === 0 || !existsSync(join(runcRoot, c.id))) report.removed.push(`container ${c.id.slice(0, 12)} (${c.status})`);
    else report.failed.push(`runc delete ${c.id}: ${deleted.stderr.trim()}`);
  }
}

/**
 * containerd's runc shims outlive containerd by design; ours are the ones started with
 * `-address <our socket>`. Their sockets sit in /run/containerd/s, named by containerd 1.6
 * as sha256(<address>/<namespace>/<id>).
 */
async function stopShims(layout: Layout, report: TeardownReport): Promise<void> {
  const socket = layout.containerd.socket;
  for (const p of listProcesses()) {
    const at = p.cmdline.indexOf('-address');
    if (at < 0 || p.cmdline[at + 1] !== socket || !/containerd-shim/.test(p.cmdline[0] ?? '')) continue;
    await terminate(p.pid, 2_000);
    report.removed.push(`shim ${p.pid}`);
    const ns = p.cmdline[p.cmdline.indexOf('-namespace') + 1];
    const id = p.cmdline[p.cmdline.indexOf('-id') + 1];
    if (ns !== undefined && id !== undefined) {
      const name = createHash('sha256').update(join(socket, ns, id)).digest('hex');
      await rm(join(containerdShimSocketDir, name), { force: true });
    }
  }
}

/** Mount points of the cgroup hierarchies (v1 controllers and the v2 unified one). */
function cgroupMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((line) => line.split(' - '))
    .filter(([, fs]) => /^cgroup2? /.test(fs ?? ''))
    .map(([before]) => unescapeMount((before ?? '').split(' ')[4] ?? ''))
    .filter((mountPoint) => mountPoint !== '');
}

/** The kubelet's kubepods tree in every hierarchy: whatever still runs there is ours; then rmdir. */
async function removePodCgroups(report: TeardownReport): Promise<void> {
  for (const mount of cgroupMounts()) {
    const root = join(mount, 'kubepods');
    if (!existsSync(root)) continue;
    const dirs = await walkDirs(root);
    for (let attempt = 0; attempt < 50; attempt++) {
      let pids = 0;
      for (const dir of dirs) {
        const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
        for (const pid of procs.split('\n').filter((s) => s !== '')) { pids++; signal(Number(pid), 'SIGKILL'); }
      }
      if (pids === 0) break;
      if (attempt === 0) report.removed.push(`${pids} processes in ${root}`);
      await sleep(100);
    }
    // Deepest first: a cgroup directory goes only once its children are gone.
    for (const dir of dirs.sort((a, b) => b.length - a.length)) {
      for (let attempt = 0; ; attempt++) {
        try { await rmdir(dir); break; } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (attempt >= 20) { report.failed.push(`rmdir ${dir}: ${code}`); break; }
          await sleep(100); // a just-killed process may still be leaving the cgroup
        }
      }
    }
    report.removed.push(`cgroup ${root}`);
  }
}

async function walkDirs(root: string): Promise<string[]> {
  const out = [root];
  for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) out.push(...await walkDirs(join(root, entry.name)));
  }
  return out;
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Every mount under `dir`: containers' rootfs and shm, Pods' netns and volumes. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((line) => unescapeMount(line.split(' ')[4] ?? ''))
    .filter((mountPoint) => mountPoint.startsWith(`${dir}/`));
}

async function unmountUnder(dir: string, report: TeardownReport): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const mounts = mountsUnder(dir).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const mountPoint of mounts) {
      const result = await run('umount', [mountPoint]);
      if (result.code !== 0) await run('umount', ['-l', mountPoint]); // busy: detach it now, the kernel finishes later
    }
    report.removed.push(`${mounts.length} mounts under ${dir}`);
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`still mounted: ${left.join(', ')}`);
}

/** The veths on the bridge (normally gone with their netns) and the bridge itself. */
async function removeNetwork(report: TeardownReport): Promise<void> {
  const shown = await run('ip', ['-j', 'link', 'show', 'dev', network.bridge]);
  if (shown.code !== 0) return; // no bridge: nothing of ours
  const ports = await run('ip', ['-j', 'link', 'show', 'master', network.bridge]);
  for (const link of (JSON.parse(ports.stdout.trim() || '[]') as Array<{ ifname: string }>)) {
    const deleted = await run('ip', ['link', 'del', link.ifname]);
    if (deleted.code === 0) report.removed.push(`interface ${link.ifname}`);
  }
  const deleted = await run('ip', ['link', 'del', network.bridge]);
  if (deleted.code !== 0) throw new Error(`ip link del ${network.bridge}: ${deleted.stderr.trim()}`);
  report.removed.push(`bridge ${network.bridge}`);
}

/**
 * kube-proxy's and the kubelet's chains are all named KUBE-*: rules in built-in chains that
 * jump to them are deleted, then the chains are flushed and removed, in one iptables-restore
 * per table so the change is atomic.
 */
export async function removeIptablesRules(report: TeardownReport): Promise<void> {
  for (const tool of ['iptables', 'ip6tables']) {
    for (const table of ['filter', 'nat', 'mangle', 'raw']) {
      const saved = await run(`${tool}-save`, ['-t', table]).catch(() => undefined);
      if (saved === undefined || saved.code !== 0) continue;
      const script = kubeChainsRemoval(table, saved.stdout);
      if (script === undefined) continue;
      const restored = await run(`${tool}-restore`, ['--noflush'], script);
      if (restored.code !== 0) throw new Error(`${tool}-restore (${table}): ${restored.stderr.trim()}\n${script}`);
      report.removed.push(`${tool} ${table}: KUBE-* chains and their rules`);
    }
  }
}

/** An iptables-restore script that removes the KUBE-* chains in `saved` (iptables-save -t table), or undefined. */
export function kubeChainsRemoval(table: string, saved: string): string | undefined {
  const lines = saved.split('\n');
  const chains = lines.filter((l) => /^:KUBE-\S+ /.test(l)).map((l) => l.slice(1).split(' ')[0] ?? '');
  const jumps = lines.filter((l) => /^-A (?!KUBE-)\S+ .*-j KUBE-/.test(l) || /^-A (?!KUBE-)\S+ .*-g KUBE-/.test(l));
  if (chains.length === 0 && jumps.length === 0) return undefined;
  return [
    `*${table}`,
    ...jumps.map((l) => `-D${l.slice(2)}`),
    ...chains.map((c) => `-F ${c}`),
    ...chains.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
}

async function removeFiles(layout: Layout, report: TeardownReport): Promise<void> {
  // libcni caches a result per sandbox and network: <network>-<sandbox id>-<ifname>. Ours are
  // the ferry-pods ones and the loopback ones of the same sandboxes (containerd's cni-loopback).
  const cached = await readdir(cniCacheDir).catch(() => [] as string[]);
  const prefix = `${network.cniNetwork}-`;
  const sandboxes = cached.filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length).split('-')[0] ?? '');
  for (const name of cached) {
    const ours = name.startsWith(prefix) || sandboxes.some((id) => id !== '' && name === `cni-loopback-${id}-lo`);
    if (!ours) continue;
    await rm(join(cniCacheDir, name), { force: true });
    report.removed.push(`${join(cniCacheDir, name)}`);
  }
  for (const name of await readdir(containerLogLinks).catch(() => [] as string[])) {
    const path = join(containerLogLinks, name);
    const target = await readlink(path).catch(() => '');
    if (target.startsWith(`${layout.kubelet.podLogs}/`)) await unlink(path).catch(() => {});
  }
}

export async function snapshotSysctls(layout: Layout, names: readonly string[]): Promise<void> {
  if (existsSync(layout.sysctlSnapshot)) return; // a crashed run's snapshot holds the true originals
  const values: Record<string, string> = {};
  for (const name of names) {
    const value = await readFile(join('/proc/sys', name), 'utf8').catch(() => undefined);
    if (value !== undefined) values[name] = value.trim();
  }
  await writeFile(layout.sysctlSnapshot, `${JSON.stringify(values, null, 2)}\n`);
}

async function restoreSysctls(layout: Layout, report: TeardownReport): Promise<void> {
  if (!existsSync(layout.sysctlSnapshot)) return;
  const values = JSON.parse(await readFile(layout.sysctlSnapshot, 'utf8')) as Record<string, string>;
  for (const [name, value] of Object.entries(values)) {
    const path = join('/proc/sys', name);
    const now = (await readFile(path, 'utf8').catch(() => '')).trim();
    if (now === value) continue;
    await writeFile(path, `${value}\n`);
    report.removed.push(`sysctl ${name.replaceAll('/', '.')} ${now} -> ${value}`);
  }
  await rm(layout.sysctlSnapshot, { force: true });
}

export interface Owner { workDir: string; pid: number; startTime: string; startedAt: string }

export async function readOwner(): Promise<Owner | undefined> {
  const text = await readFile(ownerFile, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try { return JSON.parse(text) as Owner; } catch { return undefined; }
}

async function releaseOwner(layout: Layout): Promise<void> {
  const owner = await readOwner();
  if (owner?.workDir === layout.dir) await rm(ownerFile, { force: true });
}
