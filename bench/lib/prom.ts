// Reads Prometheus text exposition (the API server's and the controllers' /metrics) into
// samples, and subtracts two readings, which is how every request count here is taken.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Samples of the named metrics (all when `names` is empty). */
export function parseMetrics(text: string, names: string[] = []): Sample[] {
  const wanted = new Set(names);
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const [, name = '', labelText = '', value = ''] = match;
    if (wanted.size > 0 && !wanted.has(name)) continue;
    const labels: Record<string, string> = {};
    for (const [, key = '', raw = ''] of labelText.matchAll(LABEL)) labels[key] = raw.replace(/\\(.)/g, '$1');
    samples.push({ name, labels, value: Number(value) });
  }
  return samples;
}

const keyOf = (s: Sample) => `${s.name}{${Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;

/** after − before, per series (a series missing before counts from 0). */
export function diffMetrics(before: Sample[], after: Sample[]): Sample[] {
  const base = new Map(before.map((s) => [keyOf(s), s.value]));
  return after
    .map((s) => ({ ...s, value: s.value - (base.get(keyOf(s)) ?? 0) }))
    .filter((s) => s.value !== 0);
}

/** Sums values grouped by what `group` returns; samples for which it returns undefined are dropped. */
export function sumBy(samples: Sample[], group: (s: Sample) => string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    const key = group(s);
    if (key !== undefined) out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}
