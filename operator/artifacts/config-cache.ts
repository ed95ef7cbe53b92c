// Frozen configurations are immutable, so the operator keeps recently used ones in memory by
// digest instead of reading the store on every reconcile. Bounded, least recently used first out:
// by count, and by total weight (bytes, say) when the values' sizes vary as much as a tenant likes.
export class LruCache<V> {
  private readonly entries = new Map<string, { value: V; weight: number }>();
  private readonly capacity: number;
  private readonly budget: { maxWeight: number; weigh: (value: V) => number } | undefined;
  private weight = 0;

  constructor(capacity: number, budget?: { maxWeight: number; weigh: (value: V) => number }) {
    this.capacity = capacity;
    this.budget = budget;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V): void {
    this.remove(key);
    const weight = this.budget?.weigh(value) ?? 0;
    // A value heavier than the whole budget is not kept at all.
    if (this.budget && weight > this.budget.maxWeight) return;
    this.entries.set(key, { value, weight });
    this.weight += weight;
    while (this.entries.size > this.capacity || (this.budget && this.weight > this.budget.maxWeight)) this.remove(this.entries.keys().next().value as string);
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.weight -= entry.weight;
  }

  get size(): number {
    return this.entries.size;
  }
}
