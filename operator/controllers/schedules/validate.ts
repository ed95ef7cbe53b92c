// What a Pipeline's schedules must be beyond their schema: a cron croner reads, in a real time
// zone, parameters the Pipeline declares with values of their types, and run names that fit.
// The first problem is the Pipeline's Ready=False reason InvalidSchedule.
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter } from '../pipeline-run/parameters.ts';
import type { ValidationProblem } from '../pipeline/validate.ts';
import { cronOf, scheduledRunName } from './times.ts';

/** The latest time a run name is derived from here, for its length: the year 9999. */
const LAST_TIME = new Date('9999-12-31T23:59:00Z');

export function scheduleProblem(pipeline: Pipeline): ValidationProblem | undefined {
  const declared = new Map((pipeline.spec.parameters ?? []).map((p) => [p.name, p]));
  for (const schedule of pipeline.spec.schedules ?? []) {
    const problem = (message: string) => ({ reason: Reasons.InvalidSchedule, message: `schedule "${schedule.name}": ${message}` });
    const cron = cronOf(schedule);
    if ('error' in cron) return problem(cron.error);
    for (const { name, value } of schedule.parameters ?? []) {
      const parameter = declared.get(name);
      if (!parameter) {
        return problem(`parameter "${name}" is not a parameter of the Pipeline (it has ${[...declared.keys()].map((n) => `"${n}"`).join(', ') || 'none'})`);
      }
      const coerced = coerceParameter(parameter.type ?? 'string', value);
      if ('error' in coerced) return problem(`parameter "${name}": ${coerced.error}`);
    }
    const longest = scheduledRunName(pipeline.metadata.name, schedule.name, LAST_TIME);
    if (longest.length > 253) return problem(`its run names (${longest}) would be longer than 253 characters: shorten the Pipeline's or the schedule's name`);
  }
  return undefined;
}
