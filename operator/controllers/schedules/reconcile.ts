// A Pipeline's schedules, one pass (the Pipeline controller calls it for a valid Pipeline):
// for each schedule, the time due now (times.ts) gets its run, within the concurrency policy,
// and the status says the last and next times. The run's name is derived from its scheduled
// time and the status written after it, so a pass cut off between the two starts nothing
// twice: the next pass finds the run (AlreadyExists, or in the cache) and only writes status.
import { EventReasons } from '../../api/v1alpha1/conditions.ts';
import { ANNOTATION_SCHEDULED_AT, FINAL_RUN_PHASES, LABEL_PIPELINE, LABEL_SCHEDULE } from '../../api/v1alpha1/labels.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import { STATUS_MESSAGE_MAX, type ScheduleSpec, type ScheduleStatus } from '../../api/v1alpha1/schedule.ts';
import type { KubeClient } from '../../kube/client.ts';
import { isAlreadyExists } from '../../kube/errors.ts';
import { labelValue } from '../../kube/names.ts';
import { PIPELINE_RUNS } from '../../kube/resources.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Clock } from '../../runtime/clock.ts';
import { inNamespace, type RunCache } from '../indexes.ts';
import { truncate } from '../pipeline-run/pod-status.ts';
import { cronOf, decide, scheduledRunName } from './times.ts';

export interface ScheduleDeps {
  client: KubeClient;
  runs: RunCache;
  clock: Clock;
  log: Logger;
}

export interface SchedulesOutcome {
  statuses: ScheduleStatus[];
  events: Array<['Normal' | 'Warning', string, string]>;
  /** Until the earliest next scheduled time. */
  requeueAfterMs?: number;
}

export async function reconcileSchedules(deps: ScheduleDeps, pipeline: Pipeline): Promise<SchedulesOutcome> {
  const now = deps.clock.now();
  const before = new Map((pipeline.status?.schedules ?? []).map((s) => [s.name, s]));
  const outcome: SchedulesOutcome = { statuses: [], events: [] };
  for (const spec of pipeline.spec.schedules ?? []) {
    const cron = cronOf(spec);
    if ('error' in cron) continue; // the Pipeline is not Ready then (validate-schedules.ts)
    const previous = before.get(spec.name);
    const decision = decide(cron, spec, previous, now);
    const status: ScheduleStatus = {
      name: spec.name,
      cron: spec.cron,
      ...(spec.timeZone ? { timeZone: spec.timeZone } : {}),
      ...(previous?.lastScheduleTime ? { lastScheduleTime: previous.lastScheduleTime } : {}),
      ...(previous?.lastRun ? { lastRun: previous.lastRun } : {}),
      ...(decision.next ? { nextScheduleTime: decision.next.toISOString() } : {}),
      missed: (previous?.missed ?? 0) + decision.missed,
      ...(previous?.message ? { message: previous.message } : {}),
    };
    if (spec.suspend) status.message = 'suspended: no run starts, and times that pass are not caught up';
    else if (decision.restarted) status.message = `next run at ${decision.next?.toISOString() ?? 'never'}`;
    const missed = decision.missed > 0 ? `${decision.atLeast ? 'at least ' : ''}${decision.missed} scheduled time${decision.missed === 1 ? '' : 's'} missed while the operator was down` : '';
    if (decision.due) {
      const { skipped, ...started } = await startRun(deps, pipeline, spec, decision.due, outcome);
      Object.assign(status, started);
      if (skipped) status.missed = (status.missed ?? 0) + 1;
      if (missed) status.message = `${status.message}; ${missed} (only the latest is run)`;
    } else if (missed) {
      status.message = `${missed}; the latest is more than startingDeadlineSeconds (${spec.startingDeadlineSeconds}) late, so none is run`;
      outcome.events.push(['Warning', EventReasons.ScheduleSkipped, `schedule "${spec.name}": ${status.message}`]);
    }
    // Run names a user may have labelled as this schedule's go into it: bounded as the schema is.
    if (status.message) status.message = truncate(status.message, STATUS_MESSAGE_MAX);
    if (decision.next) {
      // NOTE: a @yearly wait is longer than a timer holds; the work queue wakes it early, never late.
      const wait = decision.next.getTime() - now.getTime();
      outcome.requeueAfterMs = Math.min(outcome.requeueAfterMs ?? Infinity, Math.max(wait, 0));
    }
    outcome.statuses.push(status);
  }
  return outcome;
}

/** The due time's run, within the schedule's concurrency policy: what the status says of it. */
async function startRun(
  deps: ScheduleDeps, pipeline: Pipeline, spec: ScheduleSpec, due: Date, outcome: SchedulesOutcome,
): Promise<Pick<ScheduleStatus, 'lastScheduleTime' | 'lastRun' | 'message'> & { skipped?: boolean }> {
  const namespace = pipeline.metadata.namespace ?? '';
  const name = scheduledRunName(pipeline.metadata.name, spec.name, due);
  const at = due.toISOString();
  const ofSchedule = deps.runs.byIndex('pipeline', inNamespace(namespace, pipeline.metadata.name))
    .filter((r) => r.metadata.labels?.[LABEL_SCHEDULE] === spec.name);
  if (ofSchedule.some((r) => r.metadata.name === name)) return { lastScheduleTime: at, lastRun: name, message: `started run ${name} for ${at}` };
  const active = ofSchedule.filter((r) => !FINAL_RUN_PHASES.has(r.status?.phase ?? '') && !r.spec.cancel);
  const policy = spec.concurrencyPolicy ?? 'Forbid';
  if (policy === 'Forbid' && active.length > 0) {
    const message = `skipped ${at}: run ${active.map((r) => r.metadata.name).join(', ')} still runs (concurrencyPolicy Forbid)`;
    outcome.events.push(['Normal', EventReasons.ScheduleSkipped, truncate(`schedule "${spec.name}" ${message}`, STATUS_MESSAGE_MAX)]);
    return { lastScheduleTime: at, message, skipped: true };
  }
  if (policy === 'Replace') {
    for (const run of active) {
      await deps.client.mergePatch(PIPELINE_RUNS, namespace, run.metadata.name, { spec: { cancel: true } });
      deps.log.info('scheduled run replaced', { namespace, pipeline: pipeline.metadata.name, schedule: spec.name, cancelled: run.metadata.name, by: name });
    }
  }
  const run: PipelineRun = {
    apiVersion: 'ferry.dev/v1alpha1',
    kind: 'PipelineRun',
    metadata: {
      name,
      namespace,
      labels: { [LABEL_PIPELINE]: labelValue(pipeline.metadata.name), [LABEL_SCHEDULE]: spec.name },
      annotations: { [ANNOTATION_SCHEDULED_AT]: at },
    },
    spec: { pipelineRef: { name: pipeline.metadata.name }, ...(spec.parameters?.length ? { parameters: spec.parameters } : {}) },
  };
  try {
    await deps.client.create(PIPELINE_RUNS, namespace, run);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err; // created by a pass cut off before its status write
  }
  const replaced = policy === 'Replace' && active.length > 0 ? ` (replacing ${active.map((r) => r.metadata.name).join(', ')})` : '';
  deps.log.info('scheduled run started', { namespace, pipeline: pipeline.metadata.name, schedule: spec.name, run: name, scheduledAt: at });
  outcome.events.push(['Normal', EventReasons.ScheduledRunStarted, truncate(`schedule "${spec.name}" started run ${name} for ${at}${replaced}`, STATUS_MESSAGE_MAX)]);
  return { lastScheduleTime: at, lastRun: name, message: `started run ${name} for ${at}${replaced}` };
}
