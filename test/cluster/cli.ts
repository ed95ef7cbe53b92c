// `npm run cluster -- <command>`: the local single-node cluster from the command line.
//   up [--detach] [--no-verify] [--dir DIR]  start (after cleaning leftovers), run the smoke test,
//                                            print `export KUBECONFIG=...`; stay until Ctrl-C, which
//                                            stops it, or with --detach leave it running and exit
//   down [--purge] [--dir DIR]               stop it (or what a crash left) and clean up; --purge
//                                            also deletes the work dir with the registry's images
//   status [--dir DIR]                       which daemons run, the node, the kubeconfig
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { assertCanRun, startCluster } from './cluster.ts';
import { readOwner, teardown } from './cleanup.ts';
import { defaultWorkDir, layoutOf } from './layout.ts';
import { recordedDaemons, run } from './processes.ts';
import { verifyCluster } from './verify.ts';

const usage = 'usage: node test/cluster/cli.ts up [--detach] [--no-verify] [--dir DIR] | down [--purge] [--dir DIR] | status [--dir DIR]';
const log = (line: string): void => console.error(`[cluster] ${line}`);

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string' },
    detach: { type: 'boolean', default: false },
    'no-verify': { type: 'boolean', default: false },
    purge: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const command = positionals[0];
const workDir = values.dir ?? defaultWorkDir();

if (values.help || command === undefined) {
  console.error(usage);
  process.exitCode = values.help ? 0 : 2;
} else if (command === 'up') {
  await up();
} else if (command === 'down') {
  await down();
} else if (command === 'status') {
  await status();
} else {
  console.error(usage);
  process.exitCode = 2;
}

async function up(): Promise<void> {
  const started = Date.now();
  const cluster = await startCluster({ workDir, log, detach: values.detach });
  try {
    if (!values['no-verify']) {
      const result = await verifyCluster(cluster, log);
      log(`smoke test passed in ${(result.durationMs / 1000).toFixed(1)} s`);
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s: API server ${cluster.server}, registry ${cluster.registry} (plain http), node ${cluster.nodeName}`);
  console.log(`export KUBECONFIG=${cluster.kubeconfigPath}`);
  if (values.detach) {
    log(`left running; stop it with: npm run cluster -- down${values.dir === undefined ? '' : ` --dir ${workDir}`}`);
    return;
  }
  log('running; Ctrl-C stops it');
  const layout = layoutOf(cluster.workDir);
  const expected = (await recordedDaemons(layout)).length;
  let watch: NodeJS.Timeout | undefined;
  const reason = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    // Also what keeps this process alive: the daemons run in sessions of their own.
    watch = setInterval(() => {
      void recordedDaemons(layout).then((alive) => {
        if (alive.length < expected) resolve(`a daemon died (running: ${alive.map((d) => d.name).join(', ') || 'none'}; logs in ${layout.logDir})`);
      }).catch(() => {});
    }, 2_000);
  });
  clearInterval(watch);
  log(`${reason}: stopping`);
  if (!reason.startsWith('SIG')) process.exitCode = 1;
  const stopped = Date.now();
  const report = await cluster.stop();
  log(`stopped in ${((Date.now() - stopped) / 1000).toFixed(1)} s`);
  if (report.failed.length > 0) process.exitCode = 1;
}

async function down(): Promise<void> {
  assertCanRun();
  const started = Date.now();
  // The machine's owner file may name another work dir (a cluster started with --dir).
  const owner = await readOwner();
  const dirs = new Set([layoutOf(workDir).dir]);
  if (values.dir === undefined && owner !== undefined) dirs.add(owner.workDir);
  let failed = 0;
  for (const dir of dirs) {
    const report = await teardown(layoutOf(dir), log);
    failed += report.failed.length;
    if (values.purge && report.failed.length === 0) {
      await rm(dir, { recursive: true, force: true });
      log(`removed ${dir}`);
    }
  }
  log(`down in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (failed > 0) process.exitCode = 1;
}

async function status(): Promise<void> {
  const layout = layoutOf(workDir);
  const owner = await readOwner();
  const daemons = await recordedDaemons(layout);
  console.log(`work dir:   ${layout.dir}${owner !== undefined && owner.workDir !== layout.dir ? ` (the machine's cluster lives in ${owner.workDir})` : ''}`);
  console.log(`daemons:    ${daemons.length === 0 ? 'none running' : daemons.map((d) => `${d.name} (${d.pid})`).join(', ')}`);
  if (!existsSync(layout.stateFile) || daemons.length === 0) {
    process.exitCode = 3;
    return;
  }
  const state = JSON.parse(await readFile(layout.stateFile, 'utf8')) as { server: string; registry: string; binDir: string; startedAt: string };
  console.log(`started:    ${state.startedAt}`);
  console.log(`API server: ${state.server}`);
  console.log(`registry:   ${state.registry}`);
  console.log(`KUBECONFIG: ${layout.kubeconfig}`);
  const nodes = await run(`${state.binDir}/kubectl`, ['--kubeconfig', layout.kubeconfig, 'get', 'nodes', '-o', 'wide']);
  console.log(nodes.code === 0 ? nodes.stdout.trimEnd() : `kubectl get nodes failed: ${nodes.stderr.trim()}`);
  if (nodes.code !== 0) process.exitCode = 1;
}
