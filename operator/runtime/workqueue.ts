// A work queue with client-go's semantics: keys (never objects), deduplicated; a key is
// never processed by two workers at once; a key re-added while processing is processed
// exactly once more after done() (after a cooldown, when done() gives one); delayed adds;
// per-key rate-limited re-adds; draining shutdown.
import type { RateLimiter } from './rate-limiter.ts';

export interface QueueObserver {
  depth(depth: number): void;
  added(): void;
  /** Seconds a key waited between being added and being handed to a worker. */
  waited(seconds: number): void;
  retried(): void;
}

const noObserver: QueueObserver = { depth() {}, added() {}, waited() {}, retried() {} };

const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  /** Dirty keys waiting out done()'s cooldown before they are queued again. */
  private readonly cooling = new Map<string, NodeJS.Timeout>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private readonly drainWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly limiter: RateLimiter;
  private readonly observer: QueueObserver;

  constructor(limiter: RateLimiter, observer: QueueObserver = noObserver) {
    this.limiter = limiter;
    this.observer = observer;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, performance.now());
    this.observer.added();
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds the key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    // NOTE: setTimeout fires at once past 2^31-1 ms (24.8 days); so soon is early, never late.
    delayMs = Math.min(delayMs, MAX_TIMER_MS);
    const at = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Re-adds a key after its failure backoff. */
  addRateLimited(key: string): void {
    this.observer.retried();
    this.addAfter(key, this.limiter.when(key));
  }

  forget(key: string): void {
    this.limiter.forget(key);
  }

  failures(key: string): number {
    return this.limiter.failures(key);
  }

  /** The next key to process, or undefined once the queue is shut down and empty. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.handOut(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Marks a key processed; if it was re-added meanwhile it is queued again, after `cooldownMs`
   * when given: the key stays dirty meanwhile, so more adds still mean one more pass.
   */
  done(key: string, cooldownMs = 0): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      if (cooldownMs > 0 && !this.shuttingDown) this.pushLater(key, cooldownMs);
      else this.push(key);
    }
    if (this.processing.size === 0) for (const wake of this.drainWaiters.splice(0)) wake();
  }

  get length(): number {
    return this.queue.length;
  }

  /** Stops accepting keys, wakes idle workers, and waits for keys in progress to finish. */
  async shutDownWithDrain(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const timer of this.cooling.values()) clearTimeout(timer);
    this.cooling.clear();
    for (const wake of this.waiters.splice(0)) wake(undefined);
    if (this.processing.size > 0) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  /** Queues a dirty key after a delay (done's cooldown); an add meanwhile finds it dirty and waits with it. */
  private pushLater(key: string, delayMs: number): void {
    clearTimeout(this.cooling.get(key));
    const timer = setTimeout(() => {
      this.cooling.delete(key);
      if (this.dirty.has(key) && !this.processing.has(key)) this.push(key);
    }, delayMs);
    timer.unref();
    this.cooling.set(key, timer);
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(this.handOut(key));
    else this.queue.push(key);
    this.observer.depth(this.queue.length);
  }

  private handOut(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined) this.observer.waited((performance.now() - added) / 1000);
    this.observer.depth(this.queue.length);
    return key;
  }
}
