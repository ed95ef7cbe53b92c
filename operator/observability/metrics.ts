// The operator's Prometheus metrics on a private prom-client registry (no globals).
// Names follow Prometheus conventions: ferry_ prefix, units in names, _total counters,
// never a run name as a label. docs/metrics.md lists them.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RequestObserver } from '../kube/client.ts';
import type { QueueObserver } from '../runtime/workqueue.ts';

export class Metrics {
  readonly registry = new Registry();

  readonly reconcileTotal = new Counter({
    name: 'ferry_reconcile_total',
    help: 'Reconciles by controller and result (success, requeue, backoff, error).',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });

  readonly reconcileDuration = new Histogram({
    name: 'ferry_reconcile_duration_seconds',
    help: 'Time spent in one reconcile.',
    labelNames: ['controller'] as const,
    // 1-2.5-5 steps: a pass is milliseconds, and its quantiles should be readable to a few.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly queueDepth = new Gauge({
    name: 'ferry_workqueue_depth',
    help: 'Keys waiting in the work queue.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });

  readonly queueAdds = new Counter({
    name: 'ferry_workqueue_adds_total',
    help: 'Keys added to the work queue.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });

  readonly queueRetries = new Counter({
    name: 'ferry_workqueue_retries_total',
    help: 'Keys re-added after a failed reconcile.',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });

  readonly queueWait = new Histogram({
    name: 'ferry_workqueue_queue_duration_seconds',
    help: 'Time a key waited in the queue before a worker took it.',
    labelNames: ['controller'] as const,
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });

  readonly apiRequests = new Counter({
    name: 'ferry_api_requests_total',
    help: 'Requests to the Kubernetes API by verb and HTTP status code.',
    labelNames: ['verb', 'code'] as const,
    registers: [this.registry],
  });

  readonly apiRequestDuration = new Histogram({
    name: 'ferry_api_request_duration_seconds',
    help: 'Latency of Kubernetes API requests (watches excluded).',
    labelNames: ['verb'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  readonly runsFinished = new Counter({
    name: 'ferry_pipelineruns_finished_total',
    help: 'PipelineRuns that reached a final phase, by phase.',
    labelNames: ['phase'] as const,
    registers: [this.registry],
  });

  readonly stepPodsCreated = new Counter({
    name: 'ferry_step_pods_created_total',
    help: 'Step Pods created (one per attempt).',
    registers: [this.registry],
  });

  readonly modelPromotions = new Counter({
    name: 'ferry_model_stage_transitions_total',
    help: 'ModelVersion stage changes, by the stage entered.',
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });

  // NOTE: `endpoint` is namespace/name of a Pipeline with `serving`: as many series as endpoints, which the admin's tenants declare.
  readonly endpointRollouts = new Counter({
    name: 'ferry_endpoint_rollouts_total',
    help: 'Endpoint rollouts that ended, by result: succeeded, or rolled_back (not ready in time; the endpoint went back to the version it served).',
    labelNames: ['endpoint', 'model', 'result'] as const,
    registers: [this.registry],
  });

  readonly endpointLiveVersion = new Gauge({
    name: 'ferry_endpoint_live_version',
    help: 'The model version number that answers at each endpoint (0: nothing is served).',
    labelNames: ['endpoint', 'model'] as const,
    registers: [this.registry],
  });

  readonly cacheLookups = new Counter({
    name: 'ferry_step_cache_lookups_total',
    help: 'Step cache lookups by result (hit, miss, wait).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly stepDuration = new Histogram({
    name: 'ferry_step_duration_seconds',
    help: 'Duration of finished steps (first attempt start to last attempt end), by result.',
    labelNames: ['result'] as const,
    buckets: [1, 5, 15, 60, 300, 900, 3600, 14400],
    registers: [this.registry],
  });

  readonly artifactBytes = new Counter({
    name: 'ferry_artifact_bytes_total',
    help: 'Bytes of artifacts published by steps (reported by the agent).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });

  readonly imageResolutions = new Counter({
    name: 'ferry_image_resolutions_total',
    help: 'Image tag → digest resolutions when runs are frozen, by result (resolved, failed, pinned).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  /** Counts runs by phase when scraped; set once the PipelineRun cache exists. */
  runPhases: () => Map<string, number> = () => new Map();

  readonly runsByPhase: Gauge = new Gauge({
    name: 'ferry_pipelineruns',
    help: 'PipelineRuns in the watched namespaces, by phase.',
    labelNames: ['phase'] as const,
    registers: [this.registry],
    collect: () => {
      this.runsByPhase.reset();
      for (const [phase, count] of this.runPhases()) this.runsByPhase.set({ phase }, count);
    },
  });

  readonly stepRetries = new Counter({
    name: 'ferry_step_retries_total',
    help: 'Step attempts that failed and were scheduled again.',
    registers: [this.registry],
  });

  /** Tells the leader gauge whether this replica leads; set once the manager exists. */
  leaderProbe: () => boolean = () => false;

  readonly leader: Gauge = new Gauge({
    name: 'ferry_leader',
    help: '1 while this replica holds the leader Lease (or runs without leader election).',
    registers: [this.registry],
    collect: () => this.leader.set(this.leaderProbe() ? 1 : 0),
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'ferry_' });
  }

  queueObserver(controller: string): QueueObserver {
    return {
      depth: (depth) => this.queueDepth.set({ controller }, depth),
      added: () => this.queueAdds.inc({ controller }),
      waited: (seconds) => this.queueWait.observe({ controller }, seconds),
      retried: () => this.queueRetries.inc({ controller }),
    };
  }

  requestObserver(): RequestObserver {
    return {
      request: (verb, code, seconds) => {
        this.apiRequests.inc({ verb, code: String(code) });
        if (verb !== 'WATCH') this.apiRequestDuration.observe({ verb }, seconds);
      },
    };
  }
}
