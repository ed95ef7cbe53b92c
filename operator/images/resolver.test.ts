// Unit tables for resolveAll: bounded concurrency, one result per key in the order given,
// failures as results, the overall deadline, and bugs thrown. A scripted resolver stands in
// for the registry (the registry client itself is tested against real servers).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageResolutionError, resolveAll, type ImageResolver, type ResolvedImage } from './resolver.ts';

const digest = (n: number): `sha256:${string}` => `sha256:${n.toString(16).padStart(64, '0')}`;

/** Resolves `name:ms` after ms milliseconds; `fail`, `transient` and `bug` in the name fail so. */
class ScriptedResolver implements ImageResolver {
  active = 0;
  maxActive = 0;
  readonly started: string[] = [];
  async resolve(reference: string): Promise<ResolvedImage> {
    this.started.push(reference);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await sleep(Number(reference.split(':')[1] ?? '0'));
      if (reference.includes('bug')) throw new TypeError('a bug');
      if (reference.includes('fail')) throw new ImageResolutionError(reference, 'not found', false);
      return { reference, pinned: `${reference}@${digest(reference.length)}`, digest: digest(reference.length) };
    } finally {
      this.active--;
    }
  }
}

describe('resolveAll', () => {
  it('keeps at most `concurrency` resolutions in flight and one result per key, in the order given', async () => {
    const resolver = new ScriptedResolver();
    const steps = Array.from({ length: 10 }, (_, i) => [`step-${i}`, `r/img${i}:${(10 - i) * 5}`] as const);
    const results = await resolveAll(resolver, steps, undefined, { concurrency: 3 });
    assert.equal(resolver.maxActive, 3);
    assert.deepEqual([...results.keys()], steps.map(([key]) => key));
    for (const [key, reference] of steps) assert.equal(results.get(key)?.image?.reference, reference);
  });

  const cases: Array<[name: string, concurrency: number, expectedMax: number]> = [
    ['one at a time', 1, 1],
    ['the default of 4', 0, 4],
    ['never more workers than references', 50, 6],
  ];
  for (const [name, concurrency, expectedMax] of cases) {
    it(`concurrency: ${name}`, async () => {
      const resolver = new ScriptedResolver();
      const refs = Array.from({ length: 6 }, (_, i) => [i, `r/x${i}:10`] as const);
      await resolveAll(resolver, refs, undefined, concurrency === 0 ? {} : { concurrency });
      assert.equal(resolver.maxActive, expectedMax);
    });
  }

  it('returns failures as results beside successes', async () => {
    const results = await resolveAll(new ScriptedResolver(), [['a', 'r/ok:1'], ['b', 'r/fail:1'], ['c', 'r/ok2:1']]);
    assert.equal(results.get('a')?.image?.reference, 'r/ok:1');
    assert.ok(results.get('b')?.error instanceof ImageResolutionError);
    assert.equal(results.get('b')?.error?.transient, false);
    assert.equal(results.get('c')?.image?.reference, 'r/ok2:1');
  });

  it('ends at the deadline: what is unfinished or not started fails transient, saying so', async () => {
    const resolver = new ScriptedResolver();
    const started = Date.now();
    const results = await resolveAll(resolver, [['fast', 'r/fast:5'], ['slow', 'r/slow:400'], ['queued', 'r/queued:1']], undefined, { concurrency: 1, deadlineMs: 100 });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 300, `took ${elapsed} ms, not ~100`);
    assert.ok(!resolver.started.includes('r/queued:1'), 'not started after the deadline');
    assert.equal(results.get('fast')?.image?.reference, 'r/fast:5');
    for (const key of ['slow', 'queued']) {
      const error = results.get(key)?.error;
      assert.ok(error instanceof ImageResolutionError, key);
      assert.equal(error.transient, true);
      assert.match(error.message, /not resolved within the deadline of 100 ms/);
    }
  });

  it('throws what is not a resolution failure, after the work in flight settled', async () => {
    const resolver = new ScriptedResolver();
    await assert.rejects(resolveAll(resolver, [['a', 'r/bug:1'], ['b', 'r/ok:30'], ['c', 'r/later:1'], ['d', 'r/later2:1']], undefined, { concurrency: 2 }), /a bug/);
    assert.equal(resolver.active, 0, 'nothing left running');
    assert.ok(!resolver.started.includes('r/later2:1'), 'no new work after the bug');
  });

  it('refuses nonsense options', async () => {
    await assert.rejects(resolveAll(new ScriptedResolver(), [], undefined, { concurrency: 0 }), RangeError);
    await assert.rejects(resolveAll(new ScriptedResolver(), [], undefined, { deadlineMs: -1 }), RangeError);
  });

  it('an empty list is an empty map', async () => {
    assert.equal((await resolveAll(new ScriptedResolver(), [])).size, 0);
  });
});
