// The items of a forEach step (pure). Each item is one Pod, `<run>-<step>-<index>-<attempt>`,
// labelled with its index; what an item did is read from its Pods on every pass, so status
// holds only counts and the first failed items, never an entry per item. Items start in index
// order within the step's maxParallelism and the run's free slots; a failed item is retried
// like a step; once every item is done the step succeeds if enough of them did
// (minSuccessRatio), and the outputs and results of the items that succeeded become the
// step's collection (collection.ts). It fails as soon as too many items failed to reach the
// ratio, stopping the items still running.
import { EventReasons, Reasons } from '../../api/v1alpha1/conditions.ts';
import { LABEL_ATTEMPT, LABEL_ITEM } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun, StepOutput, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { MAX_FOREACH_ITEMS, type StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec } from '../../agent/protocol.ts';
import { stepPodName } from '../../kube/names.ts';
import type { Pod } from '../../kube/pod.ts';
import { COLLECTION_MAX_BYTES, serializeCollection, type CollectedItem, type Collection } from './collection.ts';
import type { Planner, StepLaunch } from './planner.ts';
import { attemptOutcome, truncate } from './pod-status.ts';
import { checkResults } from './results.ts';
import { DEFAULT_FAILURE_SETTINGS, INFRASTRUCTURE_CAUSES, decideRetry } from './retry-policy.ts';
import { failStep, iso } from './transitions.ts';

const MAX_FAILED_ITEMS_SHOWN = 10;

/** The Pod of one attempt of one item. Validation refuses a step named `<forEach step>-<digits>`, so names never collide. */
export const itemPodName = (run: string, step: string, index: number, attempt: number) => stepPodName(run, `${step}-${index}`, attempt);

/** The list a forEach step fans out over: literal, a json parameter's value, or an upstream json result's. */
export function resolveItems(spec: StepSpec, params: Map<string, string>, results: Map<string, string>): { items: unknown[] } | { error: string } {
  const forEach = spec.forEach!;
  let items: unknown = forEach.items;
  if (forEach.parameter !== undefined || forEach.result !== undefined) {
    const source = forEach.parameter !== undefined ? `parameter "${forEach.parameter}"` : `result "${forEach.result!.name}" of step "${forEach.result!.step}"`;
    const text = forEach.parameter !== undefined ? params.get(forEach.parameter) : results.get(`${forEach.result!.step}.${forEach.result!.name}`);
    if (text === undefined) return { error: `forEach: ${source} has no value` };
    try {
      items = JSON.parse(text) as unknown;
    } catch {
      return { error: `forEach: ${source} is not JSON` };
    }
    if (!Array.isArray(items)) return { error: `forEach: ${source} is not a JSON list` };
  }
  if (!Array.isArray(items)) return { error: 'forEach: no list of items' };
  if (items.length > MAX_FOREACH_ITEMS) return { error: `forEach: ${items.length} items, more than the limit of ${MAX_FOREACH_ITEMS}` };
  return { items };
}

export interface FanOut {
  spec: StepSpec;
  step: StepStatus;
  /** The step's Pods, every item and attempt. */
  pods: Pod[];
  items: unknown[];
  /** The upstream outputs every item reads. */
  inputs: InputSpec[];
  variables: StepLaunch['variables'];
  /** Pods the run may still start in this pass (shared with the other steps). */
  slots: { free: number };
  /** The run's collections: the one this step makes goes in, for the steps that start in this same pass. */
  collections: Map<string, Collection>;
}

interface ItemState {
  state: 'pending' | 'running' | 'succeeded' | 'failed';
  /** Attempts started so far. */
  attempts: number;
  collected?: CollectedItem;
  reason?: string;
  message?: string;
  /** A failed attempt to be retried at this time. */
  retryAt?: number;
}

const numberLabel = (pod: Pod, key: string) => Number(pod.metadata.labels?.[key] ?? -1);

/** One pass over a running forEach step: what its items did, which start now, and whether the step is done. */
export function advanceFanOut(p: Planner, run: PipelineRun, fan: FanOut): StepStatus {
  const { spec, step, items } = fan;
  const byItem = Map.groupBy(fan.pods, (pod) => numberLabel(pod, LABEL_ITEM));
  const states = items.map((_, index) => itemState(p, spec, byItem.get(index) ?? []));

  const counts = { total: items.length, pending: 0, running: 0, succeeded: 0, failed: 0 };
  for (const s of states) counts[s.state]++;
  const ratio = spec.forEach?.minSuccessRatio ?? 1;
  const allowedFailures = items.length - Math.ceil(ratio * items.length - 1e-9);
  const failedItems = states.flatMap((s, index) => (s.state === 'failed' ? [{ index, reason: s.reason ?? Reasons.Failed, message: truncate(s.message ?? '', 256) }] : []));
  const shown = failedItems.slice(0, MAX_FAILED_ITEMS_SHOWN);
  const withCounts = (next: StepStatus): StepStatus => ({ ...next, items: counts, ...(shown.length > 0 ? { failedItems: shown } : {}) });

  const failedBefore = step.failedItems?.length ?? 0;
  for (const item of failedItems.slice(failedBefore, MAX_FAILED_ITEMS_SHOWN)) {
    p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" item ${item.index} failed: ${item.message}`);
  }

  // The collection must stay readable (COLLECTION_MAX_BYTES): judged as the items come in, so a
  // fan-out whose items write large results fails before its reports fill the operator's memory.
  const collectedBytes = states.reduce((sum, s) => sum + (s.collected ? approximateSize(s.collected) : 0), 0);
  if (collectedBytes > COLLECTION_MAX_BYTES) {
    p.deleteActive(fan.pods);
    const message = `the items' outputs and results come to more than the ${COLLECTION_MAX_BYTES} bytes a collection may hold; write large values as outputs, not results`;
    p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed: ${message}`);
    return withCounts(failStep(step, Reasons.CollectionTooLarge, message, iso(p.facts.now)));
  }
  if (counts.failed > allowedFailures) {
    // The ratio can no longer be reached: stop the items still running.
    p.deleteActive(fan.pods);
    const message = `${counts.failed} of ${counts.total} items failed (minSuccessRatio ${ratio}); first: ${shown.map((f) => `item ${f.index}: ${f.message}`).join('; ')}`;
    p.event('Warning', EventReasons.StepFailed, `step "${spec.name}" failed: ${message}`);
    return withCounts(failStep(step, Reasons.ItemsFailed, message, iso(p.facts.now)));
  }

  if (counts.pending === 0 && counts.running === 0) {
    const collected = states.flatMap((s) => (s.collected ? [s.collected] : []));
    const collection = { total: items.length, items: collected };
    const { bytes, hex } = serializeCollection(collection);
    p.collections.push(bytes);
    fan.collections.set(spec.name, collection);
    // Items that failed while stuck (an image, no node) may still have a Pod waiting.
    p.deleteActive(fan.pods);
    const tolerated = counts.failed > 0 ? ` (${counts.failed} failed, within minSuccessRatio ${ratio})` : '';
    p.event('Normal', EventReasons.StepSucceeded, `step "${spec.name}" succeeded: ${counts.succeeded} of ${counts.total} items${tolerated}`);
    const { retryAt: _retryAt, reason: _reason, ...rest } = step;
    return withCounts({
      ...rest, phase: 'Succeeded', finishedAt: iso(p.facts.now),
      ...(tolerated ? { message: `${counts.failed} of ${counts.total} items failed${tolerated}` } : { message: undefined }),
      collection: { uri: p.facts.blobUri(hex), digest: `sha256:${hex}`, size: bytes.length },
    });
  }

  // Start items: retries whose time came and items never started, in index order.
  const running = counts.running;
  let free = Math.min(fan.slots.free, (spec.forEach?.maxParallelism ?? Infinity) - running);
  const started: number[] = [];
  for (const [index, s] of states.entries()) {
    if (free <= 0) break;
    if (s.state !== 'pending') continue;
    if (s.retryAt !== undefined && s.retryAt > p.now) {
      p.wake(s.retryAt);
      continue;
    }
    const attempt = s.attempts + 1;
    p.create.push({
      step: spec, attempt, podName: itemPodName(run.metadata.name, spec.name, index, attempt), inputs: fan.inputs,
      item: { index, value: items[index] }, ...(fan.variables ? { variables: fan.variables } : {}),
    });
    s.state = 'running';
    started.push(index);
    counts.pending--;
    counts.running++;
    free--;
    fan.slots.free--;
  }
  // A retry due later that waits for no slot still needs a timer.
  for (const s of states) if (s.state === 'pending' && s.retryAt !== undefined && s.retryAt > p.now) p.wake(s.retryAt);
  if (started.length > 0) {
    const first = started[0]!;
    const last = started.at(-1)!;
    p.event('Normal', EventReasons.StepStarted, `step "${spec.name}" started item${started.length > 1 ? `s ${first}…${last} (${started.length})` : ` ${first}`}`, spec.name);
  }
  const { retryAt: _retryAt, ...rest } = step;
  return withCounts({ ...rest, phase: 'Running' });
}

/** About the bytes an item takes in the collection document. */
const approximateSize = (item: CollectedItem): number =>
  64 + item.outputs.reduce((n, o) => n + o.name.length + o.uri.length + o.digest.length + 32, 0)
  + Object.entries(item.results ?? {}).reduce((n, [k, v]) => n + k.length + v.length + 8, 0);

/** What one item's Pods say: its newest attempt's outcome, and whether a failure is retried. */
function itemState(p: Planner, spec: StepSpec, pods: Pod[]): ItemState {
  if (pods.length === 0) return { state: 'pending', attempts: 0 };
  const newest = pods.reduce((a, b) => (numberLabel(b, LABEL_ATTEMPT) > numberLabel(a, LABEL_ATTEMPT) ? b : a));
  const attempts = numberLabel(newest, LABEL_ATTEMPT);
  // Pods of earlier attempts must not run on.
  p.deleteActive(pods.filter((pod) => pod !== newest));
  const settings = p.facts.failureSettings ?? DEFAULT_FAILURE_SETTINGS;
  const outcome = attemptOutcome(newest, { now: p.facts.now, timeouts: settings });
  if (outcome.state === 'active') {
    // A stuck Pod (an image it cannot pull, no node) fails the item at failsAt; it is not
    // deleted before the step ends, since it is the item's record.
    if (outcome.failsAt) p.wake(Date.parse(outcome.failsAt));
    return { state: 'running', attempts };
  }
  if (outcome.state === 'succeeded') {
    const report = p.facts.reports.get(newest.metadata.name);
    if (report && 'refused' in report) return { state: 'failed', attempts, reason: Reasons.InvalidStepReport, message: report.refused };
    const published = new Map((report?.outputs ?? []).map((o) => [o.name, o]));
    const missing = (spec.outputs ?? []).filter((o) => !published.has(o.name)).map((o) => `"${o.name}"`);
    if (missing.length > 0) return { state: 'failed', attempts, reason: Reasons.MissingOutput, message: `its Pod succeeded but reported no ${missing.join(', ')} output` };
    const checked = checkResults(spec.results, report?.results);
    if ('error' in checked) return { state: 'failed', attempts, reason: Reasons.InvalidResult, message: checked.error };
    const outputs: StepOutput[] = (spec.outputs ?? []).map((o) => published.get(o.name)!);
    const index = numberLabel(newest, LABEL_ITEM);
    return { state: 'succeeded', attempts, collected: { index, outputs, ...(Object.keys(checked.results).length > 0 ? { results: checked.results } : {}) } };
  }
  // Earlier infrastructure losses of this item, each retried for free while the allowance lasted.
  const losses = pods.filter((pod) => pod !== newest).map((pod) => attemptOutcome(pod))
    .filter((o) => o.state === 'failed' && INFRASTRUCTURE_CAUSES.has(o.cause)).length;
  const decision = decideRetry(spec.retries, outcome.cause, attempts, Math.min(losses, settings.maxInfrastructureRetries), settings);
  if (decision.retry) {
    const finished = Date.parse(outcome.finishedAt ?? '') || p.now;
    return { state: 'pending', attempts, retryAt: finished + decision.delaySeconds * 1000 };
  }
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return { state: 'failed', attempts, reason: outcome.reason, message: `${outcome.message}${tries}` };
}
