// The local single-node cluster end to end: start it, see the node Ready, run the smoke Pods
// (locally built image from the local registry; the API server through the kubernetes
// Service), watch the garbage collector delete an owned Pod, kill -9 every daemon and start
// again over the wreck, then stop and find no process, mount, interface, cgroup, iptables
// rule or changed sysctl left. Needs root on Linux; elsewhere it fails on purpose, loudly.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimMachine, startCluster, type LocalCluster } from './cluster.ts';
import { mountsUnder } from './cleanup.ts';
import { layoutOf, network, sysctls } from './layout.ts';
import { listProcesses, recordedDaemons, run, signal } from './processes.ts';
import { verifyCluster } from './verify.ts';

if (process.platform !== 'linux' || process.getuid?.() !== 0) {
  throw new Error('test/cluster/cluster.test.ts runs a real kubelet, containerd and kube-proxy: it needs root on Linux (CI runs it as root); run it there, or leave this file out of the run');
}

const log = (line: string): void => { if (process.env.FERRY_TEST_VERBOSE) console.error(`[cluster] ${line}`); };
let workDir = '';
let cluster: LocalCluster | undefined;
let sysctlsBefore: Record<string, string> = {};
let vethsBefore: string[] = [];

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'ferry-cluster-test-'));
  // The baseline is the machine once an earlier cluster (a demo left stopped, a crashed run) is
  // cleaned up: that cleanup puts its sysctls back, and stop() must leave them as they are then.
  await claimMachine(layoutOf(workDir), log);
  sysctlsBefore = await readSysctls();
  vethsBefore = await veths();
  cluster = await startCluster({ workDir, log });
}, { timeout: 900_000 }); // a first run builds the node binaries (minutes)

after(async () => {
  const report = await cluster?.stop();
  // A work dir whose cleanup failed stays: the next start finds the leftovers through it.
  if (workDir !== '' && !process.env.FERRY_KEEP_TEST_DIRS && (report?.failed.length ?? 0) === 0) await rm(workDir, { recursive: true, force: true });
});

function started(): LocalCluster {
  assert.ok(cluster, 'the cluster did not start');
  return cluster;
}

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const result = await started().kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

async function nodeReady(c: LocalCluster): Promise<string> {
  const result = await c.kubectl(['get', 'node', c.nodeName, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
  return result.stdout.trim();
}

test('the node is Ready and reports the pinned kubelet version', async () => {
  const c = started();
  assert.equal(await nodeReady(c), 'True');
  assert.equal((await kubectlOk(['get', 'node', c.nodeName, '-o', 'jsonpath={.status.nodeInfo.kubeletVersion}'])).trim(), 'v1.35.4');
  assert.match(c.registry, /^10\.244\.0\.1:\d+$/);
});

test('Pods from the local registry run to Succeeded and reach the API server and other Pods through Services', async () => {
  const result = await verifyCluster(started(), log);
  assert.equal(result.write.phase, 'Succeeded');
  assert.match(result.write.log, /wrote \/data\/hello\.txt: hello from a Ferry Pod/);
  assert.equal(result.api.phase, 'Succeeded');
  assert.match(result.api.log, new RegExp(`reached https://${network.kubernetesServiceIp.replaceAll('.', '\\.')}:443/version through the kubernetes Service: v1\\.35\\.4`));
  assert.equal(result.service.phase, 'Succeeded');
  assert.match(result.service.log, /: ok from ferry-smoke-server-/);
});

test('the garbage collector deletes a Pod whose owner is deleted', async () => {
  const c = started();
  await kubectlOk(['create', 'configmap', 'gc-owner', '-n', 'default']);
  const uid = (await kubectlOk(['get', 'configmap', 'gc-owner', '-n', 'default', '-o', 'jsonpath={.metadata.uid}'])).trim();
  await kubectlOk(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'gc-owned', namespace: 'default', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'gc-owner', uid }] },
    spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'pause', image: c.images.pause }] },
  }));
  await waitUntil('Pod gc-owned Running', async () => (await kubectlOk(['get', 'pod', 'gc-owned', '-o', 'jsonpath={.status.phase}'])).trim() === 'Running');
  await kubectlOk(['delete', 'configmap', 'gc-owner', '-n', 'default']);
  await waitUntil('Pod gc-owned deleted by the garbage collector', async () =>
    (await c.kubectl(['get', 'pod', 'gc-owned', '-n', 'default', '-o', 'name'])).stderr.includes('NotFound'));
});

test('a start after kill -9 of every daemon cleans the leftovers and works', async () => {
  const c = started();
  await kubectlOk(['create', 'deployment', 'survivor', '--image', c.images.pause, '--replicas', '2']);
  await waitUntil('2 survivor Pods Running', async () =>
    (await kubectlOk(['get', 'pods', '-l', 'app=survivor', '-o', 'jsonpath={.items[*].status.phase}'])).trim() === 'Running Running');
  const layout = layoutOf(c.workDir);
  const daemons = await recordedDaemons(layout);
  assert.equal(daemons.length, 8, daemons.map((d) => d.name).join(', '));
  for (const d of daemons) signal(d.pid, 'SIGKILL'); // the containers and their shims keep running
  await waitUntil('the daemons gone', async () => (await recordedDaemons(layout)).length === 0);
  assert.ok(mountsUnder(c.workDir).length > 0, 'the crash should leave mounts behind for the next start to clean');

  cluster = await startCluster({ workDir, log });
  assert.equal(await nodeReady(cluster), 'True');
  // A fresh cluster: the old Deployment is gone with the old etcd data.
  assert.equal((await kubectlOk(['get', 'deployments', '-o', 'name'])).trim(), '');
  const result = await verifyCluster(cluster, log);
  assert.equal(result.api.phase, 'Succeeded');
});

test('stop leaves no process, mount, interface, cgroup, iptables rule or sysctl change behind', async () => {
  const c = started();
  const layout = layoutOf(c.workDir);
  // Ours: the daemons, and every process naming the work dir (containerd's shims do). The
  // binaries alone don't tell: other test runs on the machine use the same kube-apiserver.
  const named = (): number[] => listProcesses().filter((p) => p.cmdline.some((arg) => arg.includes(c.workDir))).map((p) => p.pid);
  const ours = [...(await recordedDaemons(layout)).map((d) => d.pid), ...named()];
  assert.ok(ours.length >= 8, `expected the daemons and shims to run, found pids ${ours.join(', ')}`);
  const report = await c.stop();
  assert.deepEqual(report.failed, []);

  assert.deepEqual(ours.filter((pid) => isAlive(pid)), [], 'processes of the cluster survived stop()');
  assert.deepEqual(named(), []);
  assert.deepEqual(await recordedDaemons(layout), []);
  assert.deepEqual(mountsUnder(c.workDir), []);
  assert.notEqual((await run('ip', ['link', 'show', 'dev', network.bridge])).code, 0, `${network.bridge} still exists`);
  assert.deepEqual((await veths()).filter((v) => !vethsBefore.includes(v)), [], 'veth interfaces remain');
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const saved = await run(tool, []);
    assert.doesNotMatch(saved.stdout, /KUBE-/, `${tool} still shows KUBE-* chains`);
  }
  assert.equal(existsSync('/sys/fs/cgroup/memory/kubepods'), false, 'the kubepods cgroup remains');
  assert.deepEqual(await readSysctls(), sysctlsBefore);
  assert.equal(existsSync(layout.containerd.dir), false);
});

async function readSysctls(): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const name of sysctls) values[name] = (await readFile(join('/proc/sys', name), 'utf8').catch(() => '')).trim();
  return values;
}

function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); // a zombie has stopped
  } catch {
    return false;
  }
}

/** Names of the machine's veth interfaces (other tools may have their own). */
async function veths(): Promise<string[]> {
  const shown = await run('ip', ['-j', 'link', 'show', 'type', 'veth']);
  return (JSON.parse(shown.stdout.trim() || '[]') as Array<{ ifname: string }>).map((l) => l.ifname);
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}
