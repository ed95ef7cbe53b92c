#!/usr/bin/env node
// Ferry's entry point. `ferry operator [--flags]` (the default) runs the operator; SIGTERM
// and SIGINT drain the work queues, release the leader Lease and exit 0.
import { ConfigError, SETTINGS, loadConfig } from './config.ts';
import { createLogger } from './observability/logger.ts';
import { errorMessage } from './kube/errors.ts';

const USAGE = `usage: ferry operator [--flag=value ...]
       ferry agent fetch-inputs|publish-outputs   (inside step Pods)
       ferry migrate-store [--flag=value ...]     (copies pre-0.2 blobs into the namespaces whose runs recorded them)
       ferry artifact-server                      (serves a file:// store; FERRY_ARTIFACT_STORE,
                                                   FERRY_ARTIFACT_SERVER_LISTEN, FERRY_ARTIFACT_SIGNING_KEY_FILE)

flags (or environment variables):
${Object.entries(SETTINGS)
  .map(([name, s]) => `  --${name.padEnd(28)} ${s.env.padEnd(34)} ${s.help} (default "${s.default}")`)
  .join('\n')}`;

async function runOperator(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  const log = createLogger({ level: config.logLevel, base: { component: 'operator' } });
  // Loaded per command: the agent in a step Pod should not pay for the operator's modules.
  const { createOperator } = await import('./operator.ts');
  const { systemClock } = await import('./runtime/clock.ts');
  const operator = await createOperator(config, log, systemClock);
  log.info('operator starting', {
    identity: config.identity,
    namespaces: config.namespaces.join(',') || '*',
    httpPort: operator.httpPort,
    leaderElection: config.leaderElection,
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    operator.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: errorMessage(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A replica that lost the Lease exits, so it restarts as a clean standby (as controller-runtime does).
  await operator.start(() => {
    log.error('lost leadership; exiting');
    process.exit(1);
  });
}

/** `ferry migrate-store`: the upgrade's one-off copy of legacy blobs (migrate-store.ts), with the operator's flags. */
async function runMigrateStore(argv: string[]): Promise<void> {
  const config = loadConfig(argv);
  const log = createLogger({ level: config.logLevel, base: { component: 'migrate-store' } });
  const { KubeClient, loadKubeConfig } = await import('./kube/client.ts');
  const { openOperatorStore } = await import('./operator.ts');
  const { migrateStore } = await import('./artifacts/migrate-store.ts');
  const client = new KubeClient(loadKubeConfig(config.kubeconfig), { qps: config.apiQps, burst: config.apiBurst, fieldManager: 'ferry-migrate-store' });
  const { store, artifactServer } = await openOperatorStore(config, client, log);
  try {
    const report = await migrateStore(client, store, config.namespaces, log);
    log.info('store migrated', { ...report });
  } finally {
    await artifactServer?.close();
  }
}

/** `ferry artifact-server`: serves the file:// store to requests the operator signed, until SIGTERM. */
async function runArtifactServer(): Promise<void> {
  const { hostPort, signingKey } = await import('./config.ts');
  const env = process.env;
  const log = createLogger({ level: (env.FERRY_LOG_LEVEL as 'info' | undefined) ?? 'info', base: { component: 'artifact-server' } });
  const listen = hostPort(env.FERRY_ARTIFACT_SERVER_LISTEN || '0.0.0.0:8081', 'FERRY_ARTIFACT_SERVER_LISTEN');
  const key = signingKey(env.FERRY_ARTIFACT_SIGNING_KEY_FILE ?? '', 'FERRY_ARTIFACT_SIGNING_KEY_FILE');
  if (!key) throw new ConfigError('FERRY_ARTIFACT_SIGNING_KEY_FILE must name the file holding the signing key');
  const { FileArtifactStore } = await import('./artifacts/file-store.ts');
  const { startArtifactServer } = await import('./artifacts/artifact-server.ts');
  const store = new FileArtifactStore(env.FERRY_ARTIFACT_STORE || 'file:///var/lib/ferry/artifacts');
  const server = await startArtifactServer({ ...listen!, store, signingKey: key, log });
  log.info('artifact server started', { url: server.url, root: store.root });
  const stop = (signal: string) => {
    log.info('shutting down', { signal });
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(): Promise<void> {
  const [command = 'operator', ...rest] = process.argv.slice(2);
  switch (command) {
    case 'operator':
      return runOperator(rest);
    case 'agent': {
      const log = createLogger({ base: { component: 'agent' }, write: (line) => process.stderr.write(line + '\n') });
      const { runAgent } = await import('./agent/agent.ts');
      process.exit(await runAgent(rest[0] ?? '', process.env, log));
    }
    case 'artifact-server':
      return runArtifactServer();
    case 'migrate-store':
      return runMigrateStore(rest);
    case 'help':
    case '--help':
      console.log(USAGE);
      return;
    default:
      throw new ConfigError(`unknown command "${command}"\n${USAGE}`);
  }
}

main().catch((err: unknown) => {
  const message = err instanceof ConfigError || err instanceof TypeError ? err.message : errorMessage(err);
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'operator failed', error: message }) + '\n');
  process.exit(1);
});
