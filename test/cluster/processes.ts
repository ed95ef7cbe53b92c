// Daemons of the local cluster as plain processes: each runs in its own session with its
// output in logs/<name>.log and its pid in pids/<name>.pid, so that `down` from another
// process, or the next start after a crash, can find and end exactly what this cluster started.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubectlResult } from '../harness/api-server.ts';
import { run } from '../harness/api-server.ts';
import type { Layout } from './layout.ts';

export interface Daemon {
  name: string;
  pid: number;
  logPath: string;
  /** Set once the process has exited (only observed by the process that started it). */
  exitCode: number | null | undefined;
  exited: Promise<void>;
}

interface PidFile { pid: number; bin: string }

export async function startDaemon(
  layout: Layout, name: string, bin: string, args: string[], env?: NodeJS.ProcessEnv, user?: { uid: number; gid: number },
): Promise<Daemon> {
  await mkdir(layout.logDir, { recursive: true });
  await mkdir(layout.pidDir, { recursive: true });
  const logPath = join(layout.logDir, `${name}.log`);
  const fd = openSync(logPath, 'a');
  // detached: a session of its own, so a Ctrl-C in the terminal reaches only the CLI, which
  // then stops the daemons in order; and `up --detach` can exit while they keep running.
  const proc = spawn(bin, args, { stdio: ['ignore', fd, fd], detached: true, env: env ?? process.env, ...user });
  closeSync(fd);
  proc.unref();
  const daemon: Daemon = { name, pid: proc.pid ?? -1, logPath, exitCode: undefined, exited: Promise.resolve() };
  daemon.exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => { daemon.exitCode = code ?? (signal === null ? null : -1); resolve(); });
    proc.once('error', (err) => {
      daemon.exitCode = -1;
      void writeFile(logPath, `spawn ${bin} failed: ${err.message}\n`, { flag: 'a' }).finally(resolve);
    });
  });
  if (proc.pid !== undefined) {
    const record: PidFile = { pid: proc.pid, bin };
    await writeFile(join(layout.pidDir, `${name}.pid`), `${JSON.stringify(record)}\n`);
  }
  return daemon;
}

/** The live processes this work dir's pid files name, checked against the binary they ran. */
export async function recordedDaemons(layout: Layout): Promise<Array<{ name: string; pid: number; bin: string }>> {
  const files = await readdir(layout.pidDir).catch(() => [] as string[]);
  const found: Array<{ name: string; pid: number; bin: string }> = [];
  for (const file of files.filter((f) => f.endsWith('.pid'))) {
    const record = JSON.parse(await readFile(join(layout.pidDir, file), 'utf8').catch(() => 'null')) as PidFile | null;
    if (record === null || !isRunning(record.pid, record.bin)) continue;
    found.push({ name: file.slice(0, -'.pid'.length), pid: record.pid, bin: record.bin });
  }
  return found;
}

/** Ends the daemon named by pids/<name>.pid: SIGTERM, then SIGKILL after graceMs. */
export async function stopRecorded(layout: Layout, name: string, graceMs: number): Promise<void> {
  const path = join(layout.pidDir, `${name}.pid`);
  const record = JSON.parse(await readFile(path, 'utf8').catch(() => 'null')) as PidFile | null;
  if (record !== null && isRunning(record.pid, record.bin)) await terminate(record.pid, graceMs, record.bin);
  await rm(path, { force: true });
}

/** SIGTERM, wait, SIGKILL: only while the pid still runs `bin` (pids get reused). */
export async function terminate(pid: number, graceMs: number, bin?: string): Promise<void> {
  const alive = (): boolean => (bin === undefined ? exists(pid) : isRunning(pid, bin));
  if (!alive()) return;
  signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(50);
  if (!alive()) return;
  signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (alive() && Date.now() < killDeadline) await sleep(20);
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig); } catch { /* already gone */ }
}

function exists(pid: number): boolean {
  try {
    // A zombie still answers kill(0); it has stopped running, which is what callers wait for.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function isRunning(pid: number, bin: string): boolean {
  if (!exists(pid)) return false;
  try {
    return readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '') === bin;
  } catch {
    return false;
  }
}

export interface ProcessInfo { pid: number; ppid: number; cmdline: string[] }

/** Every process on the machine, from /proc. */
export function listProcesses(): ProcessInfo[] {
  const result: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
      result.push({ pid: Number(entry), ppid, cmdline });
    } catch { /* exited meanwhile */ }
  }
  return result;
}

export async function runOk(bin: string, args: string[], input?: string): Promise<string> {
  const result = await run(bin, args, input);
  if (result.code !== 0) throw new Error(`${bin} ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout;
}

export type { KubectlResult };
export { run };

export async function tail(path: string, lines = 30): Promise<string> {
  const text = await readFile(path, 'utf8').catch((err: Error) => `(cannot read log: ${err.message})`);
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
