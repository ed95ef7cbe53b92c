// Assembles the operator from its parts: API client → caches → controllers → leader election
// → manager, plus the /metrics, /healthz, /readyz server. main.ts runs it; nothing here is global.
import type { Server } from 'node:http';
import { ENDPOINT_SELECTOR, MANAGED_POD_SELECTOR } from './api/v1alpha1/labels.ts';
import type { PipelineRun } from './api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from './api/v1alpha1/pipeline.ts';
import type { Config } from './config.ts';
import { createPipelineController } from './controllers/pipeline/controller.ts';
import { createPipelineRunController } from './controllers/pipeline-run/controller.ts';
import { modelVersionIndexes, pipelineIndexes, podIndexes, runIndexes, inNamespace } from './controllers/indexes.ts';
import type { Deployment, Service } from './controllers/serving/endpoint-objects.ts';
import { IMAGE_RESOLUTION_CONCURRENCY, IMAGE_RESOLUTION_DEADLINE_MS, type FreezeDeps } from './controllers/pipeline-run/freeze.ts';
import { LruCache } from './artifacts/config-cache.ts';
import { randomBytes } from 'node:crypto';
import { startArtifactServer, type RunningArtifactServer } from './artifacts/artifact-server.ts';
import { FileArtifactStore } from './artifacts/file-store.ts';
import { GcsArtifactStore } from './artifacts/gcs-store.ts';
import { HttpArtifactStore } from './artifacts/http-store.ts';
import { ensureSigningKey } from './artifacts/signing-key.ts';
import { openArtifactStore } from './artifacts/open.ts';
import type { ArtifactStore } from './artifacts/store.ts';
import type { PipelineConfiguration } from './configuration/pipeline-configuration.ts';
import { RegistryImageResolver, credentialsFromDockerConfig } from './images/registry-client.ts';
import { ImageResolutionQueue } from './images/resolution-queue.ts';
import type { RegistryCredentials } from './images/resolver.ts';
import { DEPLOYMENTS, SECRETS, SERVICES } from './kube/resources.ts';
import { OPERATOR_VERSION } from './version.ts';
import type { ModelVersion } from './api/v1alpha1/model-version.ts';
import { createModelVersionController } from './controllers/model-version/controller.ts';
import { StepCache } from './controllers/pipeline-run/step-cache.ts';
import { podForCache } from './controllers/pipeline-run/pod-status.ts';
import { MetadataBacklog } from './metadata/backlog.ts';
import { openMetadataStore } from './metadata/open.ts';
import { MODEL_VERSIONS } from './kube/resources.ts';
import { errorMessage } from './kube/errors.ts';
import { sleep } from './runtime/clock.ts';
import { KubeClient, loadKubeConfig } from './kube/client.ts';
import { EventRecorder } from './kube/events.ts';
import type { Pod } from './kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from './kube/resources.ts';
import { startHttpServer } from './observability/http-server.ts';
import type { Logger } from './observability/logger.ts';
import type { MetadataStore } from './metadata/records.ts';
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
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const newClient = (fence?: () => boolean, fenceSignal?: () => AbortSignal) => new KubeClient(kubeConfig, {
    qps: config.apiQps,
    burst: config.apiBurst,
    fieldManager: 'ferry-operator',
    observer: metrics.requestObserver(),
    ...(fence ? { fence } : {}),
    ...(fenceSignal ? { fenceSignal } : {}),
  });
  // NOTE: Events and the Lease each have a client of their own, with its own rate limit, as in
  // controller-runtime: a burst of Events must not hold back Pods and status writes behind the
  // client-side limiter, and nothing may hold back a Lease renewal.
  const leaseClient = newClient();
  const elector = config.leaderElection
    ? new LeaderElector(
        leaseClient,
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
  // NOTE: every write but the Lease's is fenced on leadership: a leader past its renew deadline
  // sends nothing more, before a standby can take the Lease over. Reads go on (warm caches).
  const whileLeader = () => elector?.isLeader() ?? true;
  const termSignal = elector ? () => elector.leadershipSignal() : undefined;
  const client = newClient(whileLeader, termSignal);
  const eventClient = newClient(whileLeader, termSignal);
  const idleTimeoutMs = config.watchIdleTimeoutMs;
  const pipelines = new Cache<Pipeline, keyof typeof pipelineIndexes>(client, config.namespaces, { resource: PIPELINES, idleTimeoutMs, indexes: pipelineIndexes }, log);
  const runs = new Cache<PipelineRun, keyof typeof runIndexes>(client, config.namespaces, { resource: PIPELINE_RUNS, idleTimeoutMs, indexes: runIndexes }, log);
  const modelVersions = new Cache<ModelVersion, keyof typeof modelVersionIndexes>(
    client, config.namespaces, { resource: MODEL_VERSIONS, idleTimeoutMs, indexes: modelVersionIndexes }, log,
  );
  const metadata = openMetadataStore(config.databaseUrl, log);
  const pods = new Cache<Pod, keyof typeof podIndexes>(
    client, config.namespaces, { resource: PODS, labelSelector: MANAGED_POD_SELECTOR, idleTimeoutMs, indexes: podIndexes, transform: podForCache }, log,
  );
  // An endpoint's Deployment and Service (label-selected: the operator caches no other workload).
  const endpointCaches = config.serving ? {
    deployments: new Cache<Deployment>(client, config.namespaces, { resource: DEPLOYMENTS, labelSelector: ENDPOINT_SELECTOR, idleTimeoutMs }, log),
    services: new Cache<Service>(client, config.namespaces, { resource: SERVICES, labelSelector: ENDPOINT_SELECTOR, idleTimeoutMs }, log),
  } : undefined;
  const events = new EventRecorder(eventClient, config.identity, clock, log);
  // NOTE: unfenced: every replica, standby too, needs the signing key, and creating the one
  // Secret is safe from any of them (AlreadyExists reads the winner's).
  const { store, artifactServer } = await openOperatorStore(config, leaseClient, log);
  const images = new RegistryImageResolver({
    insecureRegistries: config.insecureRegistries,
    allowedPrivateRegistries: config.allowedPrivateRegistries,
    allowedTokenRealms: config.allowedTokenRealms,
    cacheTtlMs: config.imageCacheMs,
  });
  // NOTE: the run controller is made below; a resolution finishing in the background wakes its run through it.
  let wakeRun: (key: string) => void = () => undefined;
  let wakePipeline: (key: string) => void = () => undefined;
  const imageQueue = new ImageResolutionQueue(images, {
    concurrency: config.workers,
    perRunConcurrency: IMAGE_RESOLUTION_CONCURRENCY,
    deadlineMs: IMAGE_RESOLUTION_DEADLINE_MS,
    answerWithinMs: 250,
    keepMs: 10 * 60_000,
    // An endpoint's server image is resolved under `endpoint:<namespace>/<pipeline>` (serving/reconcile.ts).
    onResolved: (key) => (key.startsWith('endpoint:') ? wakePipeline(key.slice('endpoint:'.length)) : wakeRun(key)),
    onError: (key, err) => log.error('image resolution failed unexpectedly', { key, error: errorMessage(err) }),
  });
  const freeze: FreezeDeps = {
    store,
    images: imageQueue,
    configurations: new LruCache<PipelineConfiguration>(1000),
    operatorVersion: OPERATOR_VERSION,
    pipelineOf: (namespace, name) => pipelines.get(`${namespace}/${name}`),
    runOf: (namespace, name) => runs.get(`${namespace}/${name}`),
    modelVersionsOf: (namespace, model) => modelVersions.byIndex('model', inNamespace(namespace, model)),
    runsOfPipeline: (namespace, pipeline) => runs.byIndex('pipeline', inNamespace(namespace, pipeline)),
    credentialsFrom: (namespace, names) => registryCredentials(client, namespace, names),
    placement: {
      ...(config.allowedNodeSelectorKeys ? { nodeSelectorKeys: config.allowedNodeSelectorKeys } : {}),
      ...(config.allowedTolerationKeys ? { tolerationKeys: config.allowedTolerationKeys } : {}),
      ...(config.allowedPriorityClasses ? { priorityClasses: config.allowedPriorityClasses } : {}),
      ...(config.allowedRuntimeClasses ? { runtimeClasses: config.allowedRuntimeClasses } : {}),
    },
    onImageResolution: (result) => metrics.imageResolutions.inc({ result }),
  };
  const agent = {
    image: config.agentImage,
    storeRoot: store.root,
    signedUrls: store.grants !== undefined,
    scratchSizeLimit: config.stepScratchSizeLimit,
    defaultTimeoutSeconds: config.defaultStepTimeoutSeconds,
    ...(config.gcsCredentialsSecret ? { gcsCredentialsSecret: config.gcsCredentialsSecret } : {}),
    ...(config.gcsEndpoint ? { gcsEndpoint: config.gcsEndpoint } : {}),
  };
  const failureSettings = {
    imagePullTimeoutSeconds: config.imagePullTimeoutSeconds,
    unschedulableTimeoutSeconds: config.unschedulableTimeoutSeconds,
    maxInfrastructureRetries: config.maxInfrastructureRetries,
    defaultStepTimeoutSeconds: config.defaultStepTimeoutSeconds,
  };
  const runController = createPipelineRunController(
    {
      client, runs, pods, events, clock, log, metrics, freeze, store, agent, failureSettings, modelVersions, metadata,
      stepCache: new StepCache(runs, store, clock), issuedVersions: new Map(), claimedVersions: new Map(), metadataBacklog: new MetadataBacklog(),
    },
    pipelines,
    config.workers,
  );
  wakeRun = (key) => runController.enqueue(key);
  const pipelineController = createPipelineController({
    client, pipelines, events, clock, log, metrics,
    schedules: { runs },
    ...(endpointCaches ? {
      serving: {
        ...endpointCaches, modelVersions, store, agent, images: imageQueue, metadata,
        credentialsFrom: freeze.credentialsFrom, metadataBacklog: new MetadataBacklog(), recordedServing: new Map(),
      },
    } : {}),
  }, config.workers);
  wakePipeline = (key) => pipelineController.enqueue(key);
  const controllers = [
    pipelineController,
    runController,
    createModelVersionController({ client, modelVersions, pipelines, metadata, events, clock, log, metrics, recorded: new Map(), metadataBacklog: new MetadataBacklog() }, config.workers),
  ];
  const manager = new Manager({ caches: [pipelines, runs, pods, modelVersions, ...(endpointCaches ? [endpointCaches.deployments, endpointCaches.services] : [])], controllers, ...(elector ? { elector } : {}), log });
  metrics.leaderProbe = () => manager.isLeader();
  metrics.runPhases = () => {
    const counts = new Map<string, number>();
    for (const run of runs.list()) counts.set(run.status?.phase ?? 'Pending', (counts.get(run.status?.phase ?? 'Pending') ?? 0) + 1);
    return counts;
  };

  const server: Server & { port: number } = await startHttpServer({
    port: config.httpPort,
    registry: metrics.registry,
    readiness: [
      { name: 'caches', check: () => (manager.cachesSynced() ? undefined : 'informer caches not synced') },
      // NOTE: runs go on without the database (records are replayed later), so this is reported, not fatal.
      { name: 'metadata', check: () => (metadata.healthy() ? undefined : 'metadata store unreachable; records are retried') },
    ],
  });
  const stopMigrations = new AbortController();
  void migrateWithRetry(metadata, log, stopMigrations.signal);

  return {
    httpPort: server.port,
    metrics,
    start: (onLostLeadership) => manager.start(onLostLeadership),
    async stop() {
      stopMigrations.abort();
      await manager.stop();
      await metadata.close();
      await artifactServer?.close();
      await images.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The store the operator reads and writes, and hands step Pods URLs of. A file:// store is
 * reached through its artifact server (the chart's), or one this process runs (development).
 */
export async function openOperatorStore(config: Readonly<Config>, client: KubeClient, log: Logger): Promise<{ store: ArtifactStore; artifactServer?: RunningArtifactServer }> {
  if (config.artifactStore.startsWith('gs:')) {
    return { store: new GcsArtifactStore(config.artifactStore, { signedUrls: config.gcsSignedUrls, ...(config.gcsEndpoint ? { apiEndpoint: config.gcsEndpoint } : {}) }) };
  }
  if (!config.artifactStore.startsWith('file:')) {
    // s3:// (presigned URLs for step Pods, always: presigning needs no extra permission).
    return {
      store: openArtifactStore(config.artifactStore, {
        ...(config.s3Endpoint ? { s3Endpoint: config.s3Endpoint } : {}),
        ...(config.s3Region ? { s3Region: config.s3Region } : {}),
        s3ForcePathStyle: config.s3ForcePathStyle,
      }),
    };
  }
  const signingKey = config.artifactSigningKey
    ?? (config.artifactSigningKeySecret ? await ensureSigningKey(client, config.leaseNamespace, config.artifactSigningKeySecret) : randomBytes(32));
  if (config.artifactServer) {
    const url = await serviceAddress(client, config.artifactServer);
    log.info('artifact server', { url, configured: config.artifactServer });
    return { store: new HttpArtifactStore(config.artifactStore, url, signingKey) };
  }
  const listen = config.artifactServerListen!;
  const served = new FileArtifactStore(config.artifactStore);
  const artifactServer = await startArtifactServer({ ...listen, store: served, signingKey, log: log.child({ component: 'artifact-server' }) });
  log.info('artifact server started', { url: artifactServer.url, root: served.root });
  return { store: new HttpArtifactStore(config.artifactStore, artifactServer.url, signingKey), artifactServer };
}

/**
 * `http://<service>.<namespace>.svc:<port>` → `http://<cluster IP>:<port>`, read from the
 * Service: step Pods reach it without cluster DNS (which a cluster may not run), and the
 * address is fixed for the Service's life. Any other URL is used as it is.
 */
async function serviceAddress(client: KubeClient, url: string): Promise<string> {
  const parsed = new URL(url);
  const match = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(parsed.hostname);
  if (!match) return url;
  const service = await client.getOrUndefined<{ spec?: { clusterIP?: string } }>(SERVICES, match[2]!, match[1]!);
  const ip = service?.spec?.clusterIP;
  if (!ip || ip === 'None') throw new Error(`artifact server ${url}: Service ${match[2]}/${match[1]} not found or has no cluster IP`);
  parsed.hostname = ip.includes(':') ? `[${ip}]` : ip;
  return parsed.toString().replace(/\/$/, '');
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

/** Migrates the metadata schema, retrying while the database is unreachable. */
async function migrateWithRetry(metadata: MetadataStore, log: Logger, signal: AbortSignal): Promise<void> {
  for (let attempt = 1; !signal.aborted; attempt++) {
    try {
      await metadata.migrate();
      return;
    } catch (err) {
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      log.warn('metadata schema migration failed; retrying', { attempt, retryInMs: delay, error: errorMessage(err) });
      await sleep(delay, signal);
    }
  }
}
