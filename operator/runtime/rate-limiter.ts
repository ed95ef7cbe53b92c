// Per-key exponential backoff for failed reconciles (client-go's ItemExponentialFailureRateLimiter):
// the n-th consecutive failure of a key waits base * 2^(n-1), capped; success forgets the key.
export interface RateLimiter {
  /** How long to wait before the key is processed again; counts one more failure. */
  when(key: string): number;
  forget(key: string): void;
  failures(key: string): number;
}

export class ExponentialBackoff implements RateLimiter {
  private readonly counts = new Map<string, number>();
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(baseMs = 5, maxMs = 5 * 60_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  when(key: string): number {
    const n = this.counts.get(key) ?? 0;
    this.counts.set(key, n + 1);
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(n, 40));
  }

  forget(key: string): void {
    this.counts.delete(key);
  }

  failures(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}
