// The first stage of a pass: collects everything the pass decides from, once, into one typed
// structure. A live run gets its frozen configuration (freezing it on the first pass), its Pods,
// oversized step reports, the resumed run's results and a view of the step cache; a finished
// run only what its short path needs (its Pods, and its configuration if it must still
// register models or record itself).
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import { FINAL_RUN_PHASES } from '../../api/v1alpha1/labels.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import { REPORT_MAX_BYTES, parseStepReport, type StepReport } from '../../agent/protocol.ts';
import { ObjectNotFoundError, ObjectTooLargeError, type ArtifactStore } from '../../artifacts/store.ts';
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
import type { StepCache } from './step-cache.ts';
import type { Reused } from './transitions.ts';

export interface GatherDeps {
  runs: RunCache;
  pods: PodCache;
  modelVersions: ModelVersionCache;
  store: ArtifactStore;
  freeze: FreezeDeps;
  stepCache: StepCache;
  clock: Clock;
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
  const done = new Set((run.status?.steps ?? []).filter((s) => s.phase === 'Succeeded').map((s) => s.podName));
  const reports = new Map<string, CheckedReport>();
  for (const pod of pods) {
    if (done.has(pod.metadata.name) || attemptOutcome(pod).state !== 'succeeded') continue;
    const message = terminationMessageOf(pod);
    if (!message) continue;
    try {
      const report = 'report' in message ? message.report : await readReport(store, namespace, message.manifest);
      for (const output of report.outputs) uriInNamespace(store, output.uri, namespace, `output "${output.name}"`);
      reports.set(pod.metadata.name, report);
    } catch (err) {
      if (!(err instanceof CrossNamespaceReferenceError || err instanceof ObjectTooLargeError || err instanceof ObjectNotFoundError || err instanceof SyntaxError)) throw err;
      reports.set(pod.metadata.name, { refused: `the step's report was refused: ${err.message}` });
    }
  }
  return reports;
}

async function readReport(store: ArtifactStore, namespace: string, manifest: { uri: string; digest: string }): Promise<StepReport> {
  const uri = uriInNamespace(store, manifest.uri, namespace, 'the step report');
  return parseStepReport(await store.readAll(uri, REPORT_MAX_BYTES), manifest.digest);
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
      ...(step.metrics ? { metrics: step.metrics } : {}),
    });
  }
  return reuse;
}
