// Assembles the operator from its parts: API client → caches → controllers → leader election
// → manager, plus the /metrics, /healthz, /readyz server. main.ts runs it; nothing here is global.
import type { Server } from 'node:http';
import { MANAGED_POD_SELECTOR } from './api/v1alpha1/labels.ts';
import type { PipelineRun } from './api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from './api/v1alpha1/pipeline.ts';
import type { Config } from './config.ts';
import { createPipelineController } from './controllers/pipeline/controller.ts';
import { createPipelineRunController, pipelineKeysOfRun, runKeyOfPod } from './controllers/pipeline-run/controller.ts';
import type { FreezeDeps } from './controllers/pipeline-run/freeze.ts';
import { LruCache } from './artifacts/config-cache.ts';
import { openArtifactStore } from './artifacts/open.ts';
import type { PipelineConfiguration } from './configuration/pipeline-configuration.ts';
import { RegistryImageResolver, credentialsFromDockerConfig } from './images/registry-client.ts';
import type { RegistryCredentials } from './images/resolver.ts';
import { SECRETS } from './kube/resources.ts';
import { OPERATOR_VERSION } from './version.ts';
import { KubeClient, loadKubeConfig } from './kube/client.ts';
import { EventRecorder } from './kube/events.ts';
import type { Pod } from './kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from './kube/resources.ts';
import { startHttpServer } from './observability/http-server.ts';
import type { Logger } from './observability/logger.ts';
import { Metrics } from './observability/metrics.ts';
import { Cache } from './runtime/cache.ts';
import type { Clock } from './runtime/clock.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { Manager } from './runtime/manager.ts';

export interface Operator {
  httpPort: number;
  metrics: Metrics;
  start(onLostLeadership: () => void): Promise<void>;
  stop(): Promise<void>;
}

export async function createOperator(config: Config, log: Logger, clock: Clock): Promise<Operator> {
  const metrics = new Metrics();
  const client = new KubeClient(loadKubeConfig(config.kubeconfig), {
    qps: config.apiQps,
    burst: config.apiBurst,
    fieldManager: 'ferry-operator',
    observer: metrics.requestObserver(),
  });
  const idleTimeoutMs = config.watchIdleTimeoutMs;
  const pipelines = new Cache<Pipeline>(client, config.namespaces, { resource: PIPELINES, idleTimeoutMs }, log);
  const runs = new Cache<PipelineRun>(client, config.namespaces, { resource: PIPELINE_RUNS, idleTimeoutMs, index: pipelineKeysOfRun }, log);
  const pods = new Cache<Pod>(
    client,
    config.namespaces,
    { resource: PODS, labelSelector: MANAGED_POD_SELECTOR, idleTimeoutMs, index: (p) => [runKeyOfPod(p) ?? ''].filter(Boolean) },
    log,
  );
  const events = new EventRecorder(client, config.identity, clock, log);
  const store = openArtifactStore(config.artifactStore, config.gcsEndpoint ? { gcsApiEndpoint: config.gcsEndpoint } : {});
  const freeze: FreezeDeps = {
    store,
    images: new RegistryImageResolver({ insecureRegistries: config.insecureRegistries, cacheTtlMs: config.imageCacheMs }),
    configurations: new LruCache<PipelineConfiguration>(1000),
    operatorVersion: OPERATOR_VERSION,
    pipelineOf: (namespace, name) => pipelines.get(`${namespace}/${name}`),
    runOf: (namespace, name) => runs.get(`${namespace}/${name}`),
    credentialsFrom: (namespace, names) => registryCredentials(client, namespace, names),
  };
  const agent = {
    image: config.agentImage,
    storeRoot: store.root,
    ...(config.artifactClaim ? { storeClaim: config.artifactClaim } : {}),
    ...(config.gcsCredentialsSecret ? { gcsCredentialsSecret: config.gcsCredentialsSecret } : {}),
    ...(config.gcsEndpoint ? { gcsEndpoint: config.gcsEndpoint } : {}),
  };
  const controllers = [
    createPipelineController({ client, pipelines, events, clock, log, metrics }, config.workers),
    createPipelineRunController({ client, runs, pods, events, clock, log, metrics, freeze, store, agent }, pipelines, config.workers),
  ];
  const elector = config.leaderElection
    ? new LeaderElector(
        client,
        {
          namespace: config.leaseNamespace,
          name: config.leaseName,
          identity: config.identity,
          leaseDurationMs: config.leaseDurationMs,
          renewDeadlineMs: config.renewDeadlineMs,
          retryPeriodMs: config.retryPeriodMs,
        },
        clock,
        log,
      )
    : undefined;
  const manager = new Manager({ caches: [pipelines, runs, pods], controllers, ...(elector ? { elector } : {}), log });
  metrics.leaderProbe = () => manager.isLeader();

  const server: Server & { port: number } = await startHttpServer({
    port: config.httpPort,
    registry: metrics.registry,
    readiness: [{ name: 'caches', check: () => (manager.cachesSynced() ? undefined : 'informer caches not synced') }],
  });

  return {
    httpPort: server.port,
    metrics,
    start: (onLostLeadership) => manager.start(onLostLeadership),
    async stop() {
      await manager.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Credentials from dockerconfigjson Secrets, merged in the order named (first match wins). */
async function registryCredentials(
  client: KubeClient, namespace: string, names: string[],
): Promise<(registry: string) => RegistryCredentials | undefined> {
  const lookups = await Promise.all(
    names.map(async (name) => {
      const secret = await client.getOrUndefined<{ data?: Record<string, string> }>(SECRETS, namespace, name);
      const json = secret?.data?.['.dockerconfigjson'];
      return json ? credentialsFromDockerConfig(Buffer.from(json, 'base64').toString('utf8')) : undefined;
    }),
  );
  return (registry) => {
    for (const lookup of lookups) {
      const found = lookup?.(registry);
      if (found) return found;
    }
    return undefined;
  };
}
