// A Pipeline's schedules: runs started on a cron schedule (docs/schedules.md), as a Kubernetes
// CronJob starts Jobs. Each scheduled time gets one run whose name is derived from that time,
// so an operator that restarts mid-way never starts it twice.
import { MAX_PARAMETERS, RunParameterSchema } from './pipeline-parts.ts';
import { Type, dnsLabel, enumOf, namedList, object, timestamp, type Static } from './schema-kit.ts';

export const CONCURRENCY_POLICIES = ['Allow', 'Forbid', 'Replace'] as const;
export const MAX_SCHEDULES = 8;
/** Longest schedule name: `<pipeline>-<schedule>-<unix minutes>` stays a short run name. */
export const SCHEDULE_NAME_MAX = 20;
/** The longest status message (and Event message) of a schedule. */
export const STATUS_MESSAGE_MAX = 1024;

export const ScheduleSchema = object({
  name: dnsLabel('Names the schedule; its runs are <pipeline>-<name>-<scheduled time in unix minutes>.', { maxLength: SCHEDULE_NAME_MAX }),
  cron: Type.String({
    minLength: 1, maxLength: 128,
    description: 'Five cron fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly.',
  }),
  timeZone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone the cron fields are read in, e.g. Europe/Berlin; UTC when unset.' })),
  parameters: Type.Optional(namedList(RunParameterSchema, MAX_PARAMETERS, "Parameter values of the runs this schedule starts, over the Pipeline's defaults.")),
  concurrencyPolicy: Type.Optional(enumOf(CONCURRENCY_POLICIES, {
    default: 'Forbid',
    description: "When a scheduled time comes while this schedule's last run still runs: Allow starts another; Forbid skips the time; Replace cancels the running one and starts the new one.",
  })),
  startingDeadlineSeconds: Type.Optional(Type.Integer({
    minimum: 1, maximum: 31_536_000,
    description: 'A time missed by more than this (the operator was down) is not run late; unset: a missed time is run however late.',
  })),
  suspend: Type.Optional(Type.Boolean({ description: 'true: no run is started; times that pass meanwhile are not caught up.' })),
});

export const ScheduleStatusSchema = object({
  name: Type.String({ maxLength: 63, description: 'The schedule this status is of.' }),
  cron: Type.Optional(Type.String({ maxLength: 128, description: 'The cron this status follows; a changed cron or time zone starts afresh from then.' })),
  timeZone: Type.Optional(Type.String({ maxLength: 64, description: 'The time zone this status follows.' })),
  lastScheduleTime: Type.Optional(timestamp('The last scheduled time this schedule acted on (started, skipped or missed).')),
  nextScheduleTime: Type.Optional(timestamp('The next time it will act, unless suspended.')),
  lastRun: Type.Optional(Type.String({ maxLength: 253, description: 'The last run it started.' })),
  missed: Type.Optional(Type.Integer({ minimum: 0, description: 'Scheduled times never run: missed while the operator was down, or skipped by Forbid.' })),
  message: Type.Optional(Type.String({ maxLength: STATUS_MESSAGE_MAX, description: 'What happened at the last scheduled time.' })),
});

export const SchedulesSchema = namedList(ScheduleSchema, MAX_SCHEDULES, 'Cron schedules that start runs of this Pipeline (docs/schedules.md).');
export const ScheduleStatusesSchema = Type.Array(ScheduleStatusSchema, { maxItems: MAX_SCHEDULES });

export type ScheduleSpec = Static<typeof ScheduleSchema>;
export type ScheduleStatus = Static<typeof ScheduleStatusSchema>;
