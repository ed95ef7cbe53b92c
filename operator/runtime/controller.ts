// A controller: N workers take keys from the work queue and reconcile them. The outcome of a
// reconcile decides what happens to the key:
//   returns {}                      → done; the key's failure backoff is forgotten
//   returns {requeueAfterMs}        → timed work: forgotten, processed again after the delay
//   returns {requeue: true}         → a system the object needs is down and its status says so:
//                                     retried with the key's exponential backoff, not forgotten
//   throws                          → transient: retried with per-key exponential backoff, logged
//                                     (a conflict at debug: the cache was behind a write)
// A key re-added while it was reconciled waits out a cooldown: the event loop's busy time during
// that reconcile (work()).
// createController + watch() are the wiring every controller shares: a log scoped to the
// controller, and cache events turned into keys.
import { setImmediate } from 'node:timers/promises';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import { errorMessage, isConflict } from '../kube/errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { objectKey, type InformerHandlers } from './informer.ts';
import { WorkQueue } from './workqueue.ts';
import { ExponentialBackoff } from './rate-limiter.ts';

/** The longest a key re-added during its reconcile waits after it (Controller.work). */
export const MAX_COOLDOWN_MS = 1000;
/** Below this much busy time a pass is cheap: its key comes back at once, as small runs' always do. */
export const MIN_COOLDOWN_MS = 25;

export interface ReconcileResult {
  requeueAfterMs?: number;
  /** Retry with the key's backoff (controller-runtime's Result{Requeue: true}); with requeueAfterMs, whichever comes first. */
  requeue?: boolean;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | void>;

/** Anything that tells handlers about adds, updates and deletes: a Cache or an Informer. */
export interface EventSource<T> {
  addHandlers(handlers: InformerHandlers<T>): void;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  /** The controller's log (field `controller`), also the one its reconciles log with. */
  readonly log: Logger;
  private readonly reconcile: Reconciler;
  private readonly workers: number;
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

  /**
   * Enqueues the keys `keysOf` maps an object to (by default its own key) on every add, update
   * (the keys of the old and the new object, as controller-runtime's map handlers do) and delete.
   * NOTE: deletes are enqueued too; a reconcile finds the object gone and returns at once.
   */
  watch<T extends KubeObject>(source: EventSource<T>, keysOf: (object: T) => readonly string[] = (o) => [objectKey(o)]): this {
    const enqueue = (object: T) => {
      for (const key of keysOf(object)) this.queue.add(key);
    };
    source.addHandlers({
      onAdd: enqueue,
      onUpdate: (previous, current) => {
        enqueue(previous);
        enqueue(current);
      },
      onDelete: enqueue,
    });
    return this;
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
      // NOTE: the event loop turns between two reconciles: one whose awaits all resolve at once
      // (nothing to write) must not chain into the next in microtasks, starving timers (the
      // Lease renewal) and the watches' I/O.
      await setImmediate();
      const key = await this.queue.get();
      if (key === undefined) return;
      const loop = performance.eventLoopUtilization();
      let immediate = false;
      try {
        immediate = await this.process(key);
      } catch (err) {
        // Only the metrics or the logger can throw here (process() catches the reconcile's
        // errors): the key goes back with its backoff and the worker carries on.
        this.queue.addRateLimited(key);
        this.log.error('reconcile crashed', { key, error: errorMessage(err) });
      } finally {
        // NOTE: a key not marked done would never be processed again. Re-added meanwhile, it waits
        // as long as the event loop was busy during this reconcile (at most MAX_COOLDOWN_MS): a
        // run whose passes are costly (a fan-out of thousands of Pods) gets at most about half of
        // the operator's time however fast its Pods change; a pass that mostly waited on the API
        // (creating Pods) or was cheap (under MIN_COOLDOWN_MS) comes back at once, as does one that
        // asked to.
        const busyMs = performance.eventLoopUtilization(loop).active;
        this.queue.done(key, immediate || busyMs < MIN_COOLDOWN_MS ? 0 : Math.min(busyMs, MAX_COOLDOWN_MS));
      }
    }
  }

  /** Reconciles a key; true when it asked to be reconciled again at once. */
  private async process(key: string): Promise<boolean> {
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
      return result?.requeueAfterMs === 0;
    } catch (err) {
      this.queue.addRateLimited(key);
      this.metrics.reconcileTotal.inc({ controller: this.name, result: 'error' });
      // A conflict means our cache was behind a write; it is routine, not a warning.
      const level = isConflict(err) ? 'debug' : 'warn';
      this.log[level]('reconcile failed, will retry', { key, error: errorMessage(err), failures: this.queue.failures(key) });
      return false;
    } finally {
      end();
    }
  }
}

/**
 * A controller named `name` whose reconcile gets `deps` with `log` scoped to the controller
 * (`controller.log`, field `controller`), the same log its worker lines carry.
 */
export function createController<D extends { log: Logger; metrics: Metrics }>(
  name: string,
  deps: D,
  workers: number,
  reconcile: (deps: D, key: string) => Promise<ReconcileResult | void>,
): Controller {
  const controller = new Controller({ name, workers, log: deps.log, metrics: deps.metrics, reconcile: (key) => reconcile(scoped, key) });
  const scoped: D = { ...deps, log: controller.log };
  return controller;
}
