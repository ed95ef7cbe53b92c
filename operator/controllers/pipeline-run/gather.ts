// The first stage of a pass: collects everything the pass decides from, once, into one typed
// structure. A live run gets its frozen configuration (freezing it on the first pass), its Pods,
// oversized step reports, the resumed run's results and a view of the step cache; a finished
// run only what its short path needs (its Pods, and its configuration if it must still
// register models or record itself).
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import { ITEM_REPORT_MAX_BYTES, REPORT_MAX_BYTES, parseStepReport, stringValues, type StepReport } from '../../agent/protocol.ts';
import { LABEL_ITEM, LABEL_STEP } from '../../api/v1alpha1/labels.ts';
import { ObjectNotFoundError, ObjectTooLargeError, blobKey, type ArtifactStore } from '../../artifacts/store.ts';
import { LruCache } from '../../artifacts/config-cache.ts';
import { COLLECTION_MAX_BYTES, parseCollection, type Collection } from './collection.ts';
import { FINAL_STEP_PHASES } from './transitions.ts';
import { CrossNamespaceReferenceError, uriInNamespace } from '../../artifacts/tenancy.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { Pod } from '../../kube/pod.ts';
import type { Clock } from '../../runtime/clock.ts';
import { inNamespace, type ModelVersionCache, type PodCache, type RunCache } from '../indexes.ts';
import { freezeRun, type FreezeDeps, type FreezeOutcome } from './freeze.ts';
import type { CheckedReport, RunFacts } from './plan.ts';
import { attemptOutcome, terminationMessageOf } from './pod-status.ts';
import { recordedAsFinished } from './records.ts';
import { registrationPending } from './registration.ts';
import type { FailureSettings } from './retry-policy.ts';
import { reusedExtras, type StepCache } from './step-cache.ts';
import type { Reused } from './transitions.ts';

export interface GatherDeps {
  runs: RunCache;
  pods: PodCache;
  modelVersions: ModelVersionCache;
  store: ArtifactStore;
  freeze: FreezeDeps;
  stepCache: StepCache;
  clock: Clock;
  /** The operator's settings for failed attempts (config.ts), passed on to the planner. */
  failureSettings: FailureSettings;
}

/** The facts of a run that has finished (Succeeded, Failed or Cancelled). */
export interface FinishedRunFacts {
  run: PipelineRun;
  pods: Pod[];
  now: Date;
  /** ModelVersions the run created (by its uid label). */
  registered: ModelVersion[];
  /** Loaded only when the run must still register models or be recorded. */
  configuration?: PipelineConfiguration;
}

export type GatheredRun = { kind: 'live'; facts: RunFacts } | { kind: 'finished'; facts: FinishedRunFacts };

export async function gatherRun(deps: GatherDeps, key: string): Promise<GatheredRun | undefined> {
  const cached = deps.runs.get(key);
  if (!cached || cached.metadata.deletionTimestamp) return undefined;
  // NOTE: the cache's object is shared; the pass works on a copy.
  const run = structuredClone(cached);
  const pods = deps.pods.byIndex('run', key).filter((pod) => pod.metadata.ownerReferences?.some((o) => o.uid === run.metadata.uid));
  const now = deps.clock.now();
  const registered = deps.modelVersions.byIndex('runUid', inNamespace(run.metadata.namespace, run.metadata.uid ?? ''));

  if (FINAL_RUN_PHASES.has(run.status?.phase ?? '')) {
    const status = run.status ?? {};
    // Its configuration is needed only to record the run, if the store missed its end, or to
    // register its models, if that was refused.
    const needsConfiguration = status.configuration !== undefined && (!recordedAsFinished(status) || registrationPending(status, undefined));
    if (!needsConfiguration) return { kind: 'finished', facts: { run, pods, now, registered } };
    const start = await freezeRun(deps.freeze, run);
    // A configuration that cannot be loaded (missing, tampered) leaves nothing to register or record from.
    return { kind: 'finished', facts: { run, pods, now, registered, ...(start.kind === 'frozen' ? { configuration: start.configuration } : {}) } };
  }

  const start: FreezeOutcome = await freezeRun(deps.freeze, run);
  return {
    kind: 'live',
    facts: {
      run,
      start,
      pods,
      now,
      registered,
      reports: await checkReports(deps.store, run, pods),
      resumed: resumedResults(deps.runs, run),
      cache: deps.stepCache.view(run.metadata.namespace ?? '', run.metadata.name),
      failureSettings: deps.failureSettings,
      collections: await loadCollections(deps.store, run),
      blobUri: (hex) => deps.store.uriFor(blobKey(run.metadata.namespace ?? '', hex)),
    },
  };
}

/**
 * The reports of succeeded Pods not yet folded into status: from the termination message, or
 * read from the store when it was too large for one. A report is refused (the step fails)
 * when it names an object outside the run's namespace or cannot be read within its limit.
 */
async function checkReports(store: ArtifactStore, run: PipelineRun, pods: Pod[]): Promise<Map<string, CheckedReport>> {
  const namespace = run.metadata.namespace ?? '';
  // A finished step's report is in its status already (a forEach step's in its collection).
  const finished = new Set((run.status?.steps ?? []).filter((s) => FINAL_STEP_PHASES.has(s.phase)).map((s) => s.name));
  const reports = new Map<string, CheckedReport>();
  for (const pod of pods) {
    if (finished.has(pod.metadata.labels?.[LABEL_STEP] ?? '') || attemptOutcome(pod).state !== 'succeeded') continue;
    const known = checkedReports.get(pod);
    const report = known !== undefined ? known : await checkReport(store, namespace, pod);
    if (report) reports.set(pod.metadata.name, report);
  }
  return reports;
}

/**
 * A succeeded Pod never changes, so its checked report is kept with the cached Pod object (a
 * fan-out's thousands of item Pods are not parsed again on every pass). Reports from the store
 * are kept by digest within a byte budget.
 */
const checkedReports = new WeakMap<Pod, CheckedReport | null>(); // null: the Pod reported nothing
const CACHED_BYTES = 64 * 1024 * 1024;
const storedReports = new LruCache<StepReport>(2000, { maxWeight: CACHED_BYTES, weigh: (r) => JSON.stringify(r).length });
const parsedCollections = new LruCache<{ collection: Collection; size: number }>(64, { maxWeight: CACHED_BYTES, weigh: (c) => c.size });

async function checkReport(store: ArtifactStore, namespace: string, pod: Pod): Promise<CheckedReport | undefined> {
  const message = terminationMessageOf(pod);
  if (!message) {
    checkedReports.set(pod, null);
    return undefined;
  }
  let checked: CheckedReport;
  try {
    // An item's report holds at most its results and outputs: a smaller limit, as a fan-out has thousands.
    const limit = pod.metadata.labels?.[LABEL_ITEM] !== undefined ? ITEM_REPORT_MAX_BYTES : REPORT_MAX_BYTES;
    const report = 'report' in message
      ? { ...message.report, ...(message.report.results ? { results: stringValues(message.report.results) } : {}) }
      : await readReport(store, namespace, message.manifest, limit);
    for (const output of report.outputs) uriInNamespace(store, output.uri, namespace, `output "${output.name}"`);
    checked = report;
  } catch (err) {
    if (!(err instanceof CrossNamespaceReferenceError || err instanceof ObjectTooLargeError || err instanceof ObjectNotFoundError || err instanceof SyntaxError)) throw err;
    checked = { refused: `the step's report was refused: ${err.message}` };
  }
  checkedReports.set(pod, checked);
  return checked;
}

async function readReport(store: ArtifactStore, namespace: string, manifest: { uri: string; digest: string }, limit: number): Promise<StepReport> {
  const uri = uriInNamespace(store, manifest.uri, namespace, 'the step report');
  const key = `${uri}@${manifest.digest}`;
  const known = storedReports.get(key);
  if (known) return known;
  const report = parseStepReport(await store.readAll(uri, limit), manifest.digest);
  storedReports.set(key, report);
  return report;
}

/**
 * The collections of the run's finished forEach steps, which later steps read their results
 * from. One that cannot be read within its limit, or does not match its digest, is left out: the
 * steps that need it then fail (the gate finds no results).
 */
async function loadCollections(store: ArtifactStore, run: PipelineRun): Promise<Map<string, Collection>> {
  const namespace = run.metadata.namespace ?? '';
  const collections = new Map<string, Collection>();
  for (const step of run.status?.steps ?? []) {
    if (!step.collection) continue;
    const uri = uriInNamespace(store, step.collection.uri, namespace, `the collection of step "${step.name}"`);
    const key = `${uri}@${step.collection.digest}`;
    let collection = parsedCollections.get(key)?.collection;
    if (!collection) {
      try {
        collection = parseCollection(await store.readAll(uri, COLLECTION_MAX_BYTES), step.collection.digest);
      } catch (err) {
        if (!(err instanceof ObjectTooLargeError || err instanceof ObjectNotFoundError || err instanceof SyntaxError)) throw err;
        continue;
      }
      parsedCollections.set(key, { collection, size: step.collection.size });
    }
    collections.set(step.name, collection);
  }
  return collections;
}

/** Results of the run being resumed that may be reused (their artifacts are checked after planning). */
function resumedResults(runs: RunCache, run: PipelineRun): Map<string, Reused> {
  const reuse = new Map<string, Reused>();
  const source = run.spec.resumeFrom ? runs.get(inNamespace(run.metadata.namespace, run.spec.resumeFrom)) : undefined;
  for (const step of source?.status?.steps ?? []) {
    if (step.phase !== 'Succeeded' && step.phase !== 'Cached') continue;
    reuse.set(step.name, {
      run: step.cachedFrom ?? source!.metadata.name,
      outputs: step.outputs ?? [],
      origin: `${source!.metadata.uid}/${step.name}`,
      ...reusedExtras(step),
    });
  }
  return reuse;
}
