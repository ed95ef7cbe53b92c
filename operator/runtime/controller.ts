// A controller: N workers take keys from the work queue and reconcile them. The outcome of a
// reconcile decides what happens to the key:
//   returns {}                      → done; the key's failure backoff is forgotten
//   returns {requeueAfterMs}        → timed work: forgotten, processed again after the delay
//   returns {requeue: true}         → a system the object needs is down and its status says so:
//                                     retried with the key's exponential backoff, not forgotten
//   throws                          → transient: retried with per-key exponential backoff, logged
import { errorMessage, isConflict } from '../kube/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { WorkQueue } from './workqueue.ts';
import { ExponentialBackoff } from './rate-limiter.ts';

export interface ReconcileResult {
  requeueAfterMs?: number;
  /** Retry with the key's backoff (controller-runtime's Result{Requeue: true}); with requeueAfterMs, whichever comes first. */
  requeue?: boolean;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | void>;

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconcile: Reconciler;
  private readonly workers: number;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private running: Promise<void>[] = [];

  constructor(options: { name: string; reconcile: Reconciler; workers: number; log: Logger; metrics: Metrics }) {
    this.name = options.name;
    this.reconcile = options.reconcile;
    this.workers = options.workers;
    this.log = options.log.child({ controller: options.name });
    this.metrics = options.metrics;
    this.queue = new WorkQueue(new ExponentialBackoff(5, 5 * 60_000), options.metrics.queueObserver(options.name));
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  start(): void {
    for (let i = 0; i < this.workers; i++) this.running.push(this.work());
    this.log.info('controller started', { workers: this.workers });
  }

  /** Stops taking new keys and waits for reconciles in progress. */
  async stop(): Promise<void> {
    await this.queue.shutDownWithDrain();
    await Promise.all(this.running);
    this.running = [];
    this.log.info('controller stopped');
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.process(key);
      } finally {
        this.queue.done(key); // NOTE: a key not marked done would never be processed again
      }
    }
  }

  private async process(key: string): Promise<void> {
    const end = this.metrics.reconcileDuration.startTimer({ controller: this.name });
    try {
      const result = await this.reconcile(key);
      if (result?.requeue) {
        this.queue.addRateLimited(key);
        this.metrics.reconcileTotal.inc({ controller: this.name, result: 'backoff' });
      } else {
        this.queue.forget(key);
        this.metrics.reconcileTotal.inc({ controller: this.name, result: result?.requeueAfterMs !== undefined ? 'requeue' : 'success' });
      }
      if (result?.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      this.queue.addRateLimited(key);
      this.metrics.reconcileTotal.inc({ controller: this.name, result: 'error' });
      // A conflict means our cache was behind a write; it is routine, not a warning.
      const level = isConflict(err) ? 'debug' : 'warn';
      this.log[level]('reconcile failed, will retry', { key, error: errorMessage(err), failures: this.queue.failures(key) });
    } finally {
      end();
    }
  }
}
