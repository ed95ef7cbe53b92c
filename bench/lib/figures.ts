// Turns what the bench observed (Pods and runs with ms timestamps, request counter deltas,
// /proc samples) into the figures of the results table. Pure functions, no I/O.
import type { Shape } from './engine.ts';
import type { PodRecord, RunRecord } from './observer.ts';
import type { Sample } from './prom.ts';

export interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

/**
 * Steps completed per second at saturation: the rate between the moments 10 % and 90 % of the
 * steps had ended, which leaves out the ramp-up (first Pods being created) and the tail (the
 * last runs draining). With fewer than 10 steps it is the overall rate.
 */
export function saturatedRate(endedMs: number[], startMs: number): number {
  const sorted = [...endedMs].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return 0;
  if (n < 10) return n / Math.max(0.001, ((sorted.at(-1) ?? startMs) - startMs) / 1000);
  const lo = Math.floor(n * 0.1);
  const hi = Math.ceil(n * 0.9) - 1;
  const seconds = ((sorted[hi] ?? 0) - (sorted[lo] ?? 0)) / 1000;
  return seconds > 0 ? (hi - lo) / seconds : NaN;
}

export interface Handoffs {
  /** Bench watch clock: dependent Pod first seen − last dependency seen Succeeded (ms). */
  watchMs: Distribution;
  /** API timestamps: dependent's creationTimestamp − last dependency's container finishedAt (ms, whole seconds). */
  apiMs: Distribution;
}

/**
 * The delay from a step's Pod succeeding to its dependent's Pod being created, for every step
 * with dependencies (first attempts only; a dependency's succeeded attempt counts).
 */
export function handoffs(shapeOf: (run: string) => Shape | undefined, pods: Iterable<PodRecord>): Handoffs {
  const byRunStep = new Map<string, PodRecord[]>();
  for (const p of pods) {
    const key = `${p.run}/${p.step}`;
    byRunStep.set(key, [...(byRunStep.get(key) ?? []), p]);
  }
  const watch: number[] = [];
  const api: number[] = [];
  for (const [key, attempts] of byRunStep) {
    const [run = '', step = ''] = key.split('/');
    const deps = shapeOf(run)?.steps.find((s) => s.name === step)?.dependsOn ?? [];
    if (deps.length === 0) continue;
    const first = attempts.reduce((a, b) => (a.seenMs <= b.seenMs ? a : b));
    const parents = deps.map((d) => byRunStep.get(`${run}/${d}`)?.find((p) => p.phase === 'Succeeded'));
    if (parents.some((p) => p?.endedMs === undefined)) continue;
    watch.push(first.seenMs - Math.max(...parents.map((p) => p!.endedMs!)));
    const apiEnds = parents.map((p) => p!.endedApiMs ?? NaN);
    if (apiEnds.every(Number.isFinite) && Number.isFinite(first.createdApiMs)) api.push(first.createdApiMs - Math.max(...apiEnds));
  }
  return { watchMs: distribution(watch), apiMs: distribution(api) };
}

const APISERVER_OWN = new Set(['endpoints', 'endpointslices', 'limitranges', 'resourcequotas', 'apiservices', 'flowschemas', 'prioritylevelconfigurations']);

/** Whose requests the API server counted: the infrastructure's are left out of a controller's. */
export function isInfrastructure(s: Sample): boolean {
  const { resource = '', subresource = '', verb = '' } = s.labels;
  if (resource === 'nodes') return true; // kwok's heartbeats
  if (resource === 'pods' && (subresource === 'status' || subresource === 'binding')) return true; // kwok, kube-scheduler
  if (verb === 'POST' && subresource === '' && (resource === 'pipelineruns' || resource === 'workflows')) return true; // the bench submits runs
  if (verb === 'WATCH' || verb === 'CONNECT') return true; // long-running: counted when they end, not per step
  if (APISERVER_OWN.has(resource)) return true; // the API server's own upkeep (the kubernetes Service, admission informers)
  return false;
}

/**
 * The controller's API requests by verb, from the API server's apiserver_request_total deltas:
 * everything but the infrastructure's, and minus the scheduler's "Scheduled" events (one
 * events.k8s.io Event per successful binding, the same API group Ferry's events use).
 */
export function controllerRequests(delta: Sample[]): { byVerb: Record<string, number>; byResource: Record<string, number> } {
  const byVerb: Record<string, number> = {};
  const byResource: Record<string, number> = {};
  let bindings = 0;
  for (const s of delta) {
    const { resource = '', subresource = '', verb = '', code = '', group = '' } = s.labels;
    if (resource === 'pods' && subresource === 'binding' && verb === 'POST' && code.startsWith('2')) bindings += s.value;
    if (isInfrastructure(s)) continue;
    byVerb[verb] = (byVerb[verb] ?? 0) + s.value;
    const key = `${verb} ${group ? `${group}/` : ''}${resource}${subresource ? `/${subresource}` : ''}`;
    byResource[key] = (byResource[key] ?? 0) + s.value;
  }
  const schedulerEvents = 'POST events.k8s.io/events';
  const taken = Math.min(bindings, byResource[schedulerEvents] ?? 0);
  if (taken > 0) {
    byResource[schedulerEvents] = (byResource[schedulerEvents] ?? 0) - taken;
    byVerb.POST = (byVerb.POST ?? 0) - taken;
  }
  for (const [k, v] of Object.entries(byResource)) if (v === 0) delete byResource[k];
  return { byVerb, byResource };
}

export const WRITE_VERBS = ['POST', 'PUT', 'PATCH', 'DELETE', 'APPLY', 'DELETECOLLECTION'];

export function perStep(counts: Record<string, number>, steps: number): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, steps > 0 ? v / steps : NaN]));
}

export function runDurations(runs: RunRecord[]): Distribution {
  return distribution(runs.filter((r) => r.endedMs !== undefined).map((r) => r.endedMs! - r.seenMs));
}
