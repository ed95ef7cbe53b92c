// Starts a throwaway PostgreSQL (Debian's server binaries) on 127.0.0.1 for the metadata-store
// tests: a fresh data dir in a temp dir, trust auth, fsync off. kill()/start() simulate an outage
// on the same data dir and port; stop() removes everything. Each test file makes its own database.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from './ports.ts';

export interface Postgres {
  /** Password-less DSN for `database`: postgres://postgres@127.0.0.1:PORT/database. */
  url(database: string): string;
  /** Creates an empty database named `<prefix>_<random>` and returns its name (see url()). */
  createDatabase(prefix: string): Promise<string>;
  /** Fast shutdown (SIGINT), then removes the data dir. Idempotent. */
  stop(): Promise<void>;
  /** Fast shutdown and start again on the same data dir and port. */
  restart(): Promise<void>;
  /** SIGKILL to the server and all its backends (a crash); start() brings it back. */
  kill(): Promise<void>;
  /** Starts the server again after kill() (crash recovery runs on the same data dir). */
  start(): Promise<void>;
  port: number;
  logPath: string;
}

export interface StartPostgresOptions {
  log?: (line: string) => void;
}

const startupTimeoutMs = 30_000;
const stopGraceMs = 10_000;

export async function startPostgres(options: StartPostgresOptions = {}): Promise<Postgres> {
  const log = options.log ?? (() => {});
  const binDir = ensureServerBinaries();
  const user = serverUser();
  const workDir = await mkdtemp(join(tmpdir(), 'ferry-pg-'));
  live.dirs.add(workDir);
  updateExitHooks();
  const dataDir = join(workDir, 'data');
  const socketDir = join(workDir, 'socket');
  const logPath = join(workDir, 'postgres.log');
  await mkdir(socketDir);
  if (user) {
    await chown(workDir, user.uid, user.gid);
    await chown(socketDir, user.uid, user.gid);
  }
  const port = await freePort();
  const url = (database: string): string => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  let server: Server | undefined;
  let removed = false;

  const startServer = async (): Promise<void> => {
    if (removed) throw new Error(`PostgreSQL in ${workDir} was stopped and removed; start a new one`);
    if (server && !server.done) return;
    const started = Date.now();
    // NOTE: right after a SIGKILL the old shared memory segment can still count as attached
    // for a moment on a busy machine, and PostgreSQL refuses to start over it: try again.
    for (let attempt = 1; ; attempt++) {
      server = spawnServer(join(binDir, 'postgres'), [
        '-D', dataDir,
        '-p', String(port),
        '-c', 'listen_addresses=127.0.0.1',
        '-c', `unix_socket_directories=${socketDir}`,
        // A test database need not survive a power cut, only kill(): writes that reached the OS are
        // enough. NOTE: synchronous_commit stays on: off, a commit acknowledged just before kill()
        // could vanish (its WAL still in shared memory), and outage tests would lose records.
        '-c', 'fsync=off',
        '-c', 'full_page_writes=off',
        '-c', 'shared_buffers=32MB',
        '-c', 'max_connections=100',
      ], { user, cwd: workDir, logPath });
      try {
        await waitReady(server, url('postgres'), logPath);
        break;
      } catch (err) {
        if (attempt >= 20 || !/pre-existing shared memory block/.test((err as Error).message)) throw err;
        await sleep(250);
      }
    }
    log(`PostgreSQL ready on 127.0.0.1:${port} after ${Date.now() - started} ms`);
  };

  const shutdown = async (signal: 'SIGINT' | 'SIGKILL'): Promise<void> => {
    const s = server;
    if (!s || s.done) return;
    // SIGINT is PostgreSQL's "fast" shutdown: it ends sessions instead of waiting for pooled ones.
    s.signal(signal);
    const timedOut = await Promise.race([s.exited.then(() => false), sleep(stopGraceMs, true, { ref: false })]);
    if (timedOut) { s.signal('SIGKILL'); await s.exited; }
    // Backends exit with the group; wait until none holds the data dir so a restart can lock it.
    await waitGroupGone(s.pid);
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    await shutdown('SIGINT');
    removed = true;
    if (!process.env.FERRY_KEEP_TEST_DIRS) await rm(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
    live.dirs.delete(workDir);
    updateExitHooks();
  })());

  const createDatabase = async (prefix: string): Promise<string> => {
    const name = `${prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 40)}_${randomBytes(4).toString('hex')}`;
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 5_000 });
    client.on('error', () => {}); // a connection lost mid-call is reported by the call itself
    try {
      await client.connect();
      await client.query(`CREATE DATABASE "${name}"`);
    } catch (err) {
      throw new Error(`creating database ${name} on 127.0.0.1:${port} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      await client.end().catch(() => undefined);
    }
    return name;
  };

  try {
    const init = spawnSync(join(binDir, 'initdb'), [
      '-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ], { cwd: workDir, encoding: 'utf8', env: serverEnv(), ...(user ? { uid: user.uid, gid: user.gid } : {}) });
    if (init.status !== 0) {
      throw new Error(`initdb in ${dataDir} failed (exit ${init.status ?? init.signal}): ${init.error?.message ?? ''}\n${init.stderr}${init.stdout}`);
    }
    // Only loopback and the socket, no password: the server is reachable from this machine only.
    await writeFile(join(dataDir, 'pg_hba.conf'), [
      'local all all trust',
      'host all all 127.0.0.1/32 trust',
      '',
    ].join('\n'));
    await startServer();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    createDatabase,
    stop,
    restart: async () => { await shutdown('SIGINT'); await startServer(); },
    kill: () => shutdown('SIGKILL'),
    start: startServer,
    port,
    logPath,
  };
}

interface Server { pid: number; exited: Promise<void>; done: boolean; signal(signal: NodeJS.Signals): void }

// What this process started and has not stopped: server process groups (until they exit) and work
// dirs (until stop()). If the process ends without stop(), the servers are killed and the dirs
// removed. The servers run in their own process group (so that kill() takes the backends with the
// postmaster), which also means a Ctrl-C at the terminal no longer reaches them: we forward it.
const live = { groups: new Set<number>(), dirs: new Set<string>() };
const forwardedSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let hooksInstalled = false;

function cleanUpLive(): void {
  for (const pid of live.groups) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  live.groups.clear();
  if (!process.env.FERRY_KEEP_TEST_DIRS) {
    for (const dir of live.dirs) {
      try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort on the way out */ }
    }
  }
  live.dirs.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  cleanUpLive();
  updateExitHooks();
  // With our handler gone and no other listener, re-raising gives the default (terminating) action.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/** Installs the exit and signal hooks while anything is live, removes them when nothing is. */
function updateExitHooks(): void {
  const wanted = live.groups.size > 0 || live.dirs.size > 0;
  if (wanted === hooksInstalled) return;
  hooksInstalled = wanted;
  if (wanted) {
    process.on('exit', cleanUpLive);
    for (const s of forwardedSignals) process.on(s, onSignal);
  } else {
    process.off('exit', cleanUpLive);
    for (const s of forwardedSignals) process.off(s, onSignal);
  }
}

function spawnServer(
  bin: string, args: string[], opts: { user: { uid: number; gid: number } | undefined; cwd: string; logPath: string },
): Server {
  const fd = openSync(opts.logPath, 'a');
  let proc: ChildProcess;
  try {
    proc = spawn(bin, args, {
      cwd: opts.cwd,
      env: serverEnv(),
      stdio: ['ignore', fd, fd],
      detached: true,
      ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const pid = proc.pid;
  const server: Server = {
    pid: pid ?? -1,
    done: pid === undefined,
    exited: Promise.resolve(),
    signal: (signal) => {
      if (server.done || pid === undefined) return;
      // The postmaster leads its own group; SIGKILL goes to the whole group so no backend survives.
      try { process.kill(signal === 'SIGKILL' ? -pid : pid, signal); } catch { /* already gone */ }
    },
  };
  if (pid !== undefined) {
    live.groups.add(pid);
    updateExitHooks();
  }
  server.exited = new Promise((resolve) => {
    const finish = (): void => {
      server.done = true;
      if (pid !== undefined) {
        live.groups.delete(pid);
        updateExitHooks();
      }
      resolve();
    };
    proc.once('exit', finish);
    // Spawn failures emit 'error' without 'exit'.
    proc.once('error', (err) => {
      void writeFile(opts.logPath, `spawn ${bin} failed: ${err.message}\n`, { flag: 'a' }).catch(() => undefined).finally(finish);
    });
  });
  return server;
}

async function waitReady(server: Server, url: string, logPath: string): Promise<void> {
  const started = Date.now();
  let lastError = '';
  for (;;) {
    if (server.done) throw new Error(`PostgreSQL exited during startup:\n${await tail(logPath)}`);
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on('error', () => {}); // a refused or reset connection is reported by connect() below
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (err) {
      lastError = (err as Error).message;
      await client.end().catch(() => undefined);
    }
    if (Date.now() - started > startupTimeoutMs) {
      throw new Error(`timed out after ${startupTimeoutMs} ms waiting for PostgreSQL (${url}): ${lastError}\n${await tail(logPath)}`);
    }
    await sleep(50);
  }
}

/** Waits until no process of the group is left (backends notice a dead postmaster within ms). */
async function waitGroupGone(pid: number): Promise<void> {
  if (pid < 0) return;
  for (let i = 0; i < 200; i++) {
    try { process.kill(-pid, 0); } catch { return; }
    await sleep(25);
  }
  try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
}

function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' };
}

/** The Debian server binaries' directory, installing `postgresql` with apt-get if none is there. */
export function ensureServerBinaries(): string {
  const found = findBinDir();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install them: apt-get install postgresql');
  }
  process.stderr.write('[harness] PostgreSQL server binaries missing: installing the Debian package postgresql with apt-get ...\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', 'postgresql']]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (exit ${r.status ?? r.signal}) while installing PostgreSQL`);
  }
  const installed = findBinDir();
  if (!installed) throw new Error('apt-get install postgresql succeeded but no /usr/lib/postgresql/*/bin/postgres exists');
  return installed;
}

function findBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  // Prefer 15 (what Debian 12 ships and what we test on), else the newest installed.
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  const ordered = versions.includes('15') ? ['15', ...versions.filter((v) => v !== '15')] : versions;
  for (const v of ordered) {
    const dir = join(root, v, 'bin');
    if (existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'))) return dir;
  }
  return undefined;
}

/**
 * PostgreSQL refuses to run as root: as root we run it as the `postgres` system user (which the
 * Debian package creates; created here if missing). A non-root caller runs it as itself.
 */
export function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let entry = passwdEntry('postgres');
  if (!entry) {
    process.stderr.write('[harness] creating the postgres system user for the PostgreSQL test server\n');
    const r = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd postgres failed (exit ${r.status ?? r.signal}): ${r.stderr}`);
    entry = passwdEntry('postgres');
    if (!entry) throw new Error('useradd postgres succeeded but /etc/passwd has no postgres entry');
  }
  return entry;
}

function passwdEntry(name: string): { uid: number; gid: number } | undefined {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

async function tail(path: string, lines = 40): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}
