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
    help: 'Reconciles by controller and result (success, requeue, error, terminal).',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });

  readonly reconcileDuration = new Histogram({
    name: 'ferry_reconcile_duration_seconds',
    help: 'Time spent in one reconcile.',
    labelNames: ['controller'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
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

  readonly cacheLookups = new Counter({
    name: 'ferry_step_cache_lookups_total',
    help: 'Step cache lookups by result (hit, miss, wait).',
    labelNames: ['result'] as const,
    registers: [this.registry],
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
