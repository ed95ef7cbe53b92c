// PostgreSQL for the local cluster's metadata store: Debian's server binaries as one more
// cluster daemon (pid file, log, stopped by teardown), listening on the bridge address so
// the operator's Pod reaches it. Started on demand (the demo, the e2e tests), not by every
// cluster start. Its data is disposable like etcd's: a cluster restart starts both afresh,
// so the metadata never outlives the objects it describes.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ensureServerBinaries, serverUser } from '../harness/postgres.ts';
import type { Layout } from './layout.ts';
import { network } from './layout.ts';
import { recordedDaemons, startDaemon, tail } from './processes.ts';
import { firstFreePort } from './registry.ts';

export interface ClusterPostgres {
  /** The DSN for Pods: postgresql://ferry:…@10.244.0.1:PORT/ferry?sslmode=disable. A secret. */
  podUrl: string;
}

const daemonName = 'postgres';
const database = 'ferry';
const role = 'ferry';
const readyTimeoutMs = 30_000;

/** Starts PostgreSQL unless it already runs for this cluster; returns the DSN either way. */
export async function ensureClusterPostgres(layout: Layout, log: (line: string) => void = () => {}): Promise<ClusterPostgres> {
  const paths = layout.postgres;
  const running = (await recordedDaemons(layout)).some((d) => d.name === daemonName);
  if (running && existsSync(paths.urlFile)) return { podUrl: await readFile(paths.urlFile, 'utf8').then((s) => s.trim()) };

  const started = Date.now();
  const binDir = ensureServerBinaries();
  const user = serverUser(); // PostgreSQL refuses to run as root
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C' };
  await mkdir(paths.socketDir, { recursive: true, mode: 0o700 }); // its trust login is for root and postgres only
  if (user) for (const dir of [paths.dir, paths.socketDir]) await chown(dir, user.uid, user.gid);

  const password = randomBytes(18).toString('base64url');
  if (!existsSync(join(paths.data, 'PG_VERSION'))) {
    const init = spawnSync(join(binDir, 'initdb'), [
      '-D', paths.data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ], { cwd: paths.dir, encoding: 'utf8', env, ...user });
    if (init.status !== 0) throw new Error(`initdb in ${paths.data} failed (exit ${init.status ?? init.signal}): ${init.stderr}${init.stdout}`);
    // The socket for setup (trust, root-only dir), passwords from the Pod network and loopback.
    await writeFile(join(paths.data, 'pg_hba.conf'), [
      'local all postgres trust',
      `host ${database} ${role} ${network.podSubnet} scram-sha-256`,
      `host ${database} ${role} 127.0.0.1/32 scram-sha-256`,
      '',
    ].join('\n'));
  }
  const port = await firstFreePort(network.gateway, [5432]);
  const daemon = await startDaemon(layout, daemonName, join(binDir, 'postgres'), [
    '-D', paths.data, '-p', String(port),
    '-c', `listen_addresses=${network.gateway},127.0.0.1`,
    '-c', `unix_socket_directories=${paths.socketDir}`,
    '-c', 'fsync=off', '-c', 'full_page_writes=off', // disposable, like etcd's --unsafe-no-fsync
    '-c', 'shared_buffers=32MB',
  ], env, user);

  const admin = { host: paths.socketDir, port, user: 'postgres', database: 'postgres' };
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (daemon.exitCode !== undefined) throw new Error(`PostgreSQL exited (code ${daemon.exitCode}); its log (${daemon.logPath}):\n${await tail(daemon.logPath)}`);
    const client = new pg.Client({ ...admin, connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      // Identifiers and the password are ours (no user input): plain SQL is safe here.
      const roles = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
      if (roles.rowCount === 0) await client.query(`CREATE ROLE ${role} LOGIN`);
      await client.query(`ALTER ROLE ${role} PASSWORD '${password}'`);
      const databases = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (databases.rowCount === 0) await client.query(`CREATE DATABASE ${database} OWNER ${role}`);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL on ${network.gateway}:${port} not ready after ${readyTimeoutMs / 1000} s: ${(err as Error).message}\n${await tail(daemon.logPath)}`);
      await sleep(200);
    } finally {
      await client.end().catch(() => {});
    }
  }
  const podUrl = `postgresql://${role}:${password}@${network.gateway}:${port}/${database}?sslmode=disable`;
  await writeFile(paths.urlFile, `${podUrl}\n`, { mode: 0o600 });
  log(`PostgreSQL ready on ${network.gateway}:${port} in ${Date.now() - started} ms`);
  return { podUrl };
}
