// The local cluster's OCI registry: Debian's docker-registry on the bridge address, plain
// http, no auth, storage in the work dir so pushed images survive a restart. containerd on
// the host pulls from it, and Pods (the operator resolving tags to digests) reach it too.
// Unlike test/harness/registry.ts it is a cluster daemon: pid file, fixed port, kept data.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Daemon } from './processes.ts';
import { startDaemon, tail } from './processes.ts';
import type { Layout } from './layout.ts';
import { network } from './layout.ts';

export const registryBin = '/usr/bin/docker-registry';
const defaultPort = 5000;

export async function startClusterRegistry(layout: Layout): Promise<{ host: string; daemon: Daemon }> {
  await mkdir(layout.registry.data, { recursive: true });
  // The same port as last time keeps image references written into manifests valid.
  const saved = Number((await readFile(layout.registry.portFile, 'utf8').catch(() => '')).trim());
  const port = await firstFreePort(network.gateway, [saved, defaultPort].filter((p) => p > 0));
  const host = `${network.gateway}:${port}`;
  await writeFile(layout.registry.config, `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(layout.registry.data)}
  delete:
    enabled: true
http:
  addr: ${JSON.stringify(host)}
  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}
`);
  const daemon = await startDaemon(layout, 'registry', registryBin, ['serve', layout.registry.config]);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (daemon.exitCode !== undefined) throw new Error(`docker-registry exited:\n${await tail(daemon.logPath)}`);
    const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
    await response?.body?.cancel();
    if (response?.status === 200) break;
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${host}:\n${await tail(daemon.logPath)}`);
    await sleep(100);
  }
  await writeFile(layout.registry.portFile, `${port}\n`);
  return { host, daemon };
}

/** The first of `preferred` that can be bound on `address`, else any free port there. */
async function firstFreePort(address: string, preferred: number[]): Promise<number> {
  for (const port of [...preferred, 0]) {
    const bound = await new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, address, () => {
        const a = server.address();
        const got = a !== null && typeof a === 'object' ? a.port : undefined;
        server.close(() => resolve(got));
      });
    });
    if (bound !== undefined) return bound;
  }
  throw new Error(`no free port on ${address}`);
}

export { firstFreePort };
