// When a schedule acts (pure): which scheduled time is due now, how many were missed, and the
// next one. Cron expressions are read by croner, in the schedule's time zone.
//
// The catch-up policy, bounded and the same as a Kubernetes CronJob's: times are due from the
// status's nextScheduleTime on. When several came while the operator was down, only the latest
// is run (if it is within startingDeadlineSeconds, when set), once; the earlier ones are counted
// as missed. A new, changed or resumed schedule starts from now: nothing before it is caught up.
import { Cron } from 'croner';
import type { ScheduleSpec, ScheduleStatus } from '../../api/v1alpha1/schedule.ts';

const NICKNAMES = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);
/** Times counted one by one after downtime; beyond that the count says "at least". */
export const MAX_COUNTED = 10_000;

/** The cron of a schedule, or why it cannot be read. Five fields only: croner's seconds field would allow a run a second. */
export function cronOf(spec: Pick<ScheduleSpec, 'cron' | 'timeZone'>): Cron | { error: string } {
  const expression = spec.cron.trim();
  const fields = expression.split(/\s+/);
  if (!(fields.length === 5 || (fields.length === 1 && NICKNAMES.has(expression)))) {
    return { error: `cron "${spec.cron}" must have five fields (minute hour day-of-month month day-of-week) or be one of ${[...NICKNAMES].join(', ')}` };
  }
  try {
    const cron = new Cron(expression, { paused: true, ...(spec.timeZone ? { timezone: spec.timeZone } : { timezone: 'Etc/UTC' }) });
    // NOTE: croner checks the time zone only when it computes a time.
    if (cron.nextRun(new Date(0)) === null) return { error: `cron "${spec.cron}" never fires` };
    return cron;
  } catch (err) {
    return { error: `cron "${spec.cron}"${spec.timeZone ? ` in time zone "${spec.timeZone}"` : ''}: ${(err as Error).message}` };
  }
}

export interface Decision {
  /** The scheduled time to act on now. */
  due?: Date;
  /** Times that came and will never run (before `due`, or all of them when past the deadline). */
  missed: number;
  /** Whether `missed` is only a lower bound (more than MAX_COUNTED times came). */
  atLeast: boolean;
  /** The next time after now; undefined while suspended. */
  next?: Date;
  /** Whether the status follows another cron, time zone or a suspension: it starts from now. */
  restarted: boolean;
}

export function decide(cron: Cron, spec: ScheduleSpec, status: ScheduleStatus | undefined, now: Date): Decision {
  if (spec.suspend) return { missed: 0, atLeast: false, restarted: false };
  const next = cron.nextRun(now) ?? undefined;
  const from = status?.nextScheduleTime ? new Date(status.nextScheduleTime) : undefined;
  const same = status?.cron === spec.cron && (status?.timeZone ?? '') === (spec.timeZone ?? '');
  if (!from || !same || Number.isNaN(from.getTime())) return { missed: 0, atLeast: false, next, restarted: true };
  if (from > now) return { missed: 0, atLeast: false, next: from, restarted: false };

  // The times in [from, now]: `from` itself (it was the next time when written) to the latest.
  const previous = cron.previousRuns(1, new Date(now.getTime() + 1))[0];
  const latest = previous && previous > from ? previous : from;
  let count = 1;
  for (let t = cron.nextRun(from); t && t <= latest && count < MAX_COUNTED; t = cron.nextRun(t)) count++;
  const atLeast = count >= MAX_COUNTED;
  const late = now.getTime() - latest.getTime();
  if (spec.startingDeadlineSeconds !== undefined && late > spec.startingDeadlineSeconds * 1000) {
    return { missed: count, atLeast, next, restarted: false };
  }
  return { due: latest, missed: count - 1, atLeast, next, restarted: false };
}

/** The run a scheduled time gets: the same name however often it is asked, so it is started once. */
export const scheduledRunName = (pipeline: string, schedule: string, at: Date): string =>
  `${pipeline}-${schedule}-${Math.floor(at.getTime() / 60_000)}`;
