// A controller: N workers take keys from the work queue and reconcile them. The outcome of a
// reconcile decides what happens to the key:
//   returns {}                      → done; the key's failure backoff is forgotten
//   returns {requeueAfterMs}        → timed work: processed again after the delay
//   throws TerminalError            → not retried; the object's status already says why
//   throws anything else            → transient: retried with per-key exponential backoff
import { errorMessage, isConflict } from '../kube/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { WorkQueue } from './workqueue.ts';
import { ExponentialBackoff } from './rate-limiter.ts';

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | void>;

/** An error that retrying cannot fix (the status says why). */
export class TerminalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TerminalError';
  }
}

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
      await this.process(key);
      this.queue.done(key);
    }
  }

  private async process(key: string): Promise<void> {
    const end = this.metrics.reconcileDuration.startTimer({ controller: this.name });
    try {
      const result = await this.reconcile(key);
      this.queue.forget(key);
      if (result?.requeueAfterMs !== undefined) {
        this.queue.addAfter(key, result.requeueAfterMs);
        this.metrics.reconcileTotal.inc({ controller: this.name, result: 'requeue' });
      } else {
        this.metrics.reconcileTotal.inc({ controller: this.name, result: 'success' });
      }
    } catch (err) {
      if (err instanceof TerminalError) {
        this.queue.forget(key);
        this.metrics.reconcileTotal.inc({ controller: this.name, result: 'terminal' });
        this.log.warn('reconcile failed for good', { key, error: err.message });
      } else {
        this.queue.addRateLimited(key);
        this.metrics.reconcileTotal.inc({ controller: this.name, result: 'error' });
        // A conflict means our cache was behind a write; it is routine, not a warning.
        const level = isConflict(err) ? 'debug' : 'warn';
        this.log[level]('reconcile failed, will retry', { key, error: errorMessage(err), failures: this.queue.failures(key) });
      }
    } finally {
      end();
    }
  }
}
