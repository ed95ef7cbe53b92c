// Keys whose records wait for the metadata store: a reconcile that finds the database down
// defers its key here instead of waiting on it; when the store answers again every deferred
// key is handed back to its controller, whose pass replays what the object's status still owes.
import type { MetadataStore } from './records.ts';

/** How a write went: stored; deferred (the database is down: replayed when it answers); or to retry with backoff (it answered, but failed). */
export type WriteOutcome = { kind: 'stored' } | { kind: 'deferred'; error?: unknown } | { kind: 'retry'; error: unknown };

export class MetadataBacklog {
  private readonly keys = new Set<string>();

  /**
   * Runs `write` for `key` unless the store is known to be down (then nothing is tried: no worker
   * waits on a dead database). A failure while the store still answers (a deadlock, a timeout) is
   * for the caller to retry with the key's backoff; one that finds it unreachable defers the key.
   */
  async write(store: MetadataStore, key: string, write: () => Promise<void>): Promise<WriteOutcome> {
    if (!store.healthy()) {
      this.keys.add(key);
      return { kind: 'deferred' };
    }
    try {
      await write();
      return { kind: 'stored' };
    } catch (error) {
      if (store.healthy()) return { kind: 'retry', error };
      this.keys.add(key);
      return { kind: 'deferred', error };
    }
  }

  /** Each time `store` answers again, gives every deferred key to `enqueue` (once) and forgets it. */
  replayWhenReachable(store: MetadataStore, enqueue: (key: string) => void, onReplay?: (count: number) => void): void {
    store.onReachable(() => {
      const waiting = [...this.keys];
      this.keys.clear();
      if (waiting.length > 0) onReplay?.(waiting.length);
      for (const key of waiting) enqueue(key);
    });
  }
}
