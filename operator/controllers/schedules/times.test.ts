import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ScheduleSpec, ScheduleStatus } from '../../api/v1alpha1/schedule.ts';
import { cronOf, decide, scheduledRunName } from './times.ts';

const at = (iso: string) => new Date(iso);
const everyMinute: ScheduleSpec = { name: 'nightly', cron: '*/1 * * * *' };
const cron = (spec: ScheduleSpec) => {
  const c = cronOf(spec);
  assert.ok(!('error' in c), JSON.stringify(c));
  return c;
};
const seen = (spec: ScheduleSpec, next: string, extra: Partial<ScheduleStatus> = {}): ScheduleStatus =>
  ({ name: spec.name, cron: spec.cron, ...(spec.timeZone ? { timeZone: spec.timeZone } : {}), nextScheduleTime: next, ...extra });

describe('cronOf', () => {
  it('reads five fields and the nicknames, in a time zone', () => {
    const berlin = cron({ name: 'x', cron: '0 2 * * *', timeZone: 'Europe/Berlin' });
    assert.equal(berlin.nextRun(at('2026-12-03T00:00:00Z'))?.toISOString(), '2026-12-03T01:00:00.000Z', '02:00 in Berlin is 01:00 UTC in winter');
    assert.equal(cron({ name: 'x', cron: '@hourly' }).nextRun(at('2026-12-03T10:20:00Z'))?.toISOString(), '2026-12-03T11:00:00.000Z');
  });

  it('says what is wrong with a cron or a time zone', () => {
    const cases: Array<[Pick<ScheduleSpec, 'cron' | 'timeZone'>, RegExp]> = [
      [{ cron: '61 * * * *' }, /minute: 61/],
      [{ cron: '0 0 * * * *' }, /must have five fields/],
      [{ cron: '@fortnightly' }, /must have five fields .* or be one of @yearly/],
      [{ cron: '0 2 * * *', timeZone: 'Mars/Olympus' }, /time zone "Mars\/Olympus".*Invalid/i],
    ];
    for (const [spec, message] of cases) {
      const result = cronOf(spec);
      assert.ok('error' in result, spec.cron);
      assert.match(result.error, message);
    }
  });
});

describe('decide', () => {
  const c = cron(everyMinute);

  it('starts a new schedule from now: nothing is due, the next time is recorded', () => {
    const d = decide(c, everyMinute, undefined, at('2026-12-03T10:00:30Z'));
    assert.deepEqual([d.due, d.missed, d.next?.toISOString(), d.restarted], [undefined, 0, '2026-12-03T10:01:00.000Z', true]);
  });

  it('makes the recorded next time due once it has come, and nothing before', () => {
    assert.equal(decide(c, everyMinute, seen(everyMinute, '2026-12-03T10:01:00Z'), at('2026-12-03T10:00:59Z')).due, undefined);
    const d = decide(c, everyMinute, seen(everyMinute, '2026-12-03T10:01:00Z'), at('2026-12-03T10:01:02Z'));
    assert.deepEqual([d.due?.toISOString(), d.missed, d.next?.toISOString()], ['2026-12-03T10:01:00.000Z', 0, '2026-12-03T10:02:00.000Z']);
  });

  it('after downtime runs only the latest missed time and counts the others', () => {
    // The operator was down from 10:03 to 10:13:20: 10:03 … 10:13 came, eleven times.
    const d = decide(c, everyMinute, seen(everyMinute, '2026-12-03T10:03:00Z'), at('2026-12-03T10:13:20Z'));
    assert.deepEqual([d.due?.toISOString(), d.missed, d.atLeast, d.next?.toISOString()], ['2026-12-03T10:13:00.000Z', 10, false, '2026-12-03T10:14:00.000Z']);
  });

  it('runs none when the latest missed time is past startingDeadlineSeconds', () => {
    const strict = { ...everyMinute, startingDeadlineSeconds: 15 };
    const d = decide(c, strict, seen(strict, '2026-12-03T10:03:00Z'), at('2026-12-03T10:13:20Z'));
    assert.deepEqual([d.due, d.missed], [undefined, 11]);
    assert.equal(decide(c, strict, seen(strict, '2026-12-03T10:03:00Z'), at('2026-12-03T10:13:10Z')).due?.toISOString(), '2026-12-03T10:13:00.000Z');
  });

  it('starts afresh when the cron or time zone changed, and does nothing while suspended', () => {
    const hourly = { ...everyMinute, cron: '0 * * * *' };
    const changed = decide(cron(hourly), hourly, seen(everyMinute, '2026-12-03T10:03:00Z'), at('2026-12-03T10:13:20Z'));
    assert.deepEqual([changed.due, changed.missed, changed.restarted, changed.next?.toISOString()], [undefined, 0, true, '2026-12-03T11:00:00.000Z']);
    const suspended = decide(c, { ...everyMinute, suspend: true }, seen(everyMinute, '2026-12-03T10:03:00Z'), at('2026-12-03T10:13:20Z'));
    assert.deepEqual([suspended.due, suspended.next, suspended.missed], [undefined, undefined, 0]);
  });

  it('bounds the count after a very long downtime and still runs the latest time', () => {
    const d = decide(c, everyMinute, seen(everyMinute, '2025-01-01T00:00:00Z'), at('2026-12-03T10:13:20Z'));
    assert.equal(d.due?.toISOString(), '2026-12-03T10:13:00.000Z');
    assert.equal(d.atLeast, true);
  });
});

describe('scheduledRunName', () => {
  it('is the same for the same time, whenever it is asked, and differs per minute', () => {
    const name = scheduledRunName('iris-train', 'nightly', at('2026-12-03T10:13:00Z'));
    assert.equal(name, 'iris-train-nightly-29938213');
    assert.equal(scheduledRunName('iris-train', 'nightly', at('2026-12-03T10:13:00Z')), name);
    assert.notEqual(scheduledRunName('iris-train', 'nightly', at('2026-12-03T10:14:00Z')), name);
  });
});
