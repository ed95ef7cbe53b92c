// Resolves runs' images off the reconcile workers, taking namespaces in turn. A run's freeze
// asks for its images; what resolves within a moment (pinned digests, a warm cache, a quick
// registry) is answered at once, anything slower goes on in the background and wakes the run
// when done. A tenant whose registry is slow or silent holds no worker, and its runs queue
// behind its own: each namespace with work gets the next free slot in turn.
import { resolveAll, type ImageResolution, type ImageResolver, type RegistryCredentials } from './resolver.ts';

export interface ResolutionRequest {
  /** The run's key (namespace/name): woken through onResolved. */
  key: string;
  namespace: string;
  /** [step name, image reference] */
  references: Array<readonly [string, string]>;
  credentials?: (registry: string) => RegistryCredentials | undefined;
}

export type ResolutionAnswer = { done: Map<string, ImageResolution> } | { pending: true };

export interface ResolutionQueueOptions {
  /** Runs resolved at once, over all namespaces. */
  concurrency: number;
  /** Images of one run resolved at once. */
  perRunConcurrency: number;
  /** The longest one run's resolution may take. */
  deadlineMs: number;
  /** How long a freeze waits for an answer before leaving it to the background. */
  answerWithinMs: number;
  /** A finished resolution nobody took is forgotten after this long (its run was deleted). */
  keepMs: number;
  /** A run whose resolution finished in the background (or failed unexpectedly: it asks again). */
  onResolved(key: string): void;
  /** An error that is not a resolution failure (a bug), for the log. */
  onError?(key: string, err: unknown): void;
  now?: () => number;
}

interface Entry {
  request: ResolutionRequest;
  /** What was asked: a Pipeline edited before the run froze asks for other images. */
  signature: string;
  result?: Map<string, ImageResolution>;
  finishedAt?: number;
  settled: Promise<void>;
  settle(): void;
}

export class ImageResolutionQueue {
  private readonly resolver: ImageResolver;
  private readonly options: ResolutionQueueOptions;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  /** Requests not started yet, per namespace; namespaces take turns in `turns` order. */
  private readonly waiting = new Map<string, Entry[]>();
  private readonly turns: string[] = [];
  private running = 0;
  private readonly runningIn = new Map<string, number>();

  constructor(resolver: ImageResolver, options: ResolutionQueueOptions) {
    this.resolver = resolver;
    this.options = options;
    this.now = options.now ?? Date.now;
  }

  /** The run's images: resolved (and then forgotten here), or still being resolved. */
  async request(request: ResolutionRequest): Promise<ResolutionAnswer> {
    this.forgetStale();
    const signature = JSON.stringify(request.references);
    let entry = this.entries.get(request.key);
    if (entry && entry.signature !== signature && entry.result) {
      this.entries.delete(request.key); // answered for other images: ask anew
      entry = undefined;
    }
    if (!entry) {
      entry = this.enqueue(request, signature);
      this.dispatch();
    }
    if (!entry.result) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([entry.settled, new Promise<void>((resolve) => { timer = setTimeout(resolve, this.options.answerWithinMs); })]);
      clearTimeout(timer);
    }
    if (!entry.result || entry.signature !== signature) return { pending: true };
    this.entries.delete(request.key);
    return { done: entry.result };
  }

  /** How many runs wait for a slot, and how many are being resolved (metrics, tests). */
  get depth(): { waiting: number; running: number } {
    let waiting = 0;
    for (const list of this.waiting.values()) waiting += list.length;
    return { waiting, running: this.running };
  }

  private enqueue(request: ResolutionRequest, signature: string): Entry {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => { settle = resolve; });
    const entry: Entry = { request, signature, settled, settle };
    this.entries.set(request.key, entry);
    const list = this.waiting.get(request.namespace);
    if (list) list.push(entry);
    else {
      this.waiting.set(request.namespace, [entry]);
      this.turns.push(request.namespace);
    }
    return entry;
  }

  /**
   * Starts what the free slots allow: each goes to the waiting namespace with the fewest
   * resolutions running, the longest waiting first among equals.
   */
  private dispatch(): void {
    while (this.running < this.options.concurrency && this.turns.length > 0) {
      let pick = 0;
      for (let i = 1; i < this.turns.length; i++) {
        if ((this.runningIn.get(this.turns[i]!) ?? 0) < (this.runningIn.get(this.turns[pick]!) ?? 0)) pick = i;
      }
      const namespace = this.turns.splice(pick, 1)[0]!;
      const list = this.waiting.get(namespace)!;
      const entry = list.shift()!;
      if (list.length > 0) this.turns.push(namespace); // its next run waits for its next turn
      else this.waiting.delete(namespace);
      this.running++;
      this.runningIn.set(namespace, (this.runningIn.get(namespace) ?? 0) + 1);
      void this.resolve(entry);
    }
  }

  private async resolve(entry: Entry): Promise<void> {
    const { request } = entry;
    try {
      entry.result = await resolveAll(this.resolver, request.references, request.credentials, {
        concurrency: this.options.perRunConcurrency, deadlineMs: this.options.deadlineMs,
      });
    } catch (err) {
      // Not a resolution failure (those are results) but a bug: the run's next pass asks again.
      this.entries.delete(request.key);
      this.options.onError?.(request.key, err);
    } finally {
      entry.finishedAt = this.now();
      this.running--;
      const left = (this.runningIn.get(request.namespace) ?? 1) - 1;
      if (left > 0) this.runningIn.set(request.namespace, left);
      else this.runningIn.delete(request.namespace);
      entry.settle();
      this.dispatch();
    }
    this.options.onResolved(request.key);
  }

  private forgetStale(): void {
    const cutoff = this.now() - this.options.keepMs;
    for (const [key, entry] of this.entries) {
      if (entry.finishedAt !== undefined && entry.finishedAt < cutoff) this.entries.delete(key);
    }
  }
}
