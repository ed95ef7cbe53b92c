import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { RateLimiter } from './rate-limiter.ts';
import { ExponentialBackoff } from './rate-limiter.ts';
import { WorkQueue } from './workqueue.ts';

/** Lets settled promises run their callbacks (setImmediate is never mocked here). */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>): { settled: boolean; value: T | undefined } {
  const state = { settled: false, value: undefined as T | undefined };
  void promise.then((value) => Object.assign(state, { settled: true, value })).catch(() => {});
  return state;
}

const queue = () => new WorkQueue(new ExponentialBackoff(5, 1000));

/** Fake time for addAfter: setTimeout and Date move only when the test ticks. */
const fakeTime = (t: TestContext) => t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });

describe('WorkQueue', () => {
  it('deduplicates keys that wait to be processed', async () => {
    const q = queue();
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'ns/a');
    assert.equal(await q.get(), 'ns/b');
    assert.equal(q.length, 0);
  });

  it('never hands out a key that is being processed; a re-add yields exactly one more get after done()', async () => {
    const q = queue();
    q.add('ns/a');
    assert.equal(await q.get(), 'ns/a');
    q.add('ns/a');
    q.add('ns/a');
    assert.equal(q.length, 0, 'the re-added key waits for done()');
    const second = track(q.get());
    await flush();
    assert.equal(second.settled, false, 'a second worker does not get the key being processed');

    q.done('ns/a');
    await flush();
    assert.deepEqual(second, { settled: true, value: 'ns/a' });

    const third = track(q.get());
    q.done('ns/a');
    await flush();
    assert.equal(third.settled, false, 'two re-adds during processing give one more pass, not two');
    assert.equal(q.length, 0);
  });

  it('queues a key re-added during processing only after done()\'s cooldown; adds meanwhile give one pass', async (t) => {
    fakeTime(t);
    const q = queue();
    q.add('ns/a');
    assert.equal(await q.get(), 'ns/a');
    q.add('ns/a');
    q.done('ns/a', 300);
    const next = track(q.get());
    t.mock.timers.tick(299);
    q.add('ns/a');
    q.add('ns/b');
    await flush();
    assert.deepEqual(next, { settled: true, value: 'ns/b' }, 'other keys are not held back');
    const after = track(q.get());
    await flush();
    assert.equal(after.settled, false, 'ns/a waits out its cooldown');
    t.mock.timers.tick(1);
    await flush();
    assert.deepEqual(after, { settled: true, value: 'ns/a' });
    q.done('ns/a', 300);
    q.done('ns/b');
    t.mock.timers.tick(1000);
    assert.equal(q.length, 0, 'the adds during the cooldown were one pass, not another');
  });

  it('hands other keys out while one is processed', async () => {
    const q = queue();
    q.add('ns/a');
    assert.equal(await q.get(), 'ns/a');
    q.add('ns/a');
    q.add('ns/b');
    assert.equal(await q.get(), 'ns/b');
  });

  it('wakes a waiting worker when a key is added', async () => {
    const q = queue();
    const waiting = track(q.get());
    await flush();
    assert.equal(waiting.settled, false);
    q.add('ns/a');
    await flush();
    assert.deepEqual(waiting, { settled: true, value: 'ns/a' });
  });

  it('done() of a key that was not re-added does not queue it again', async () => {
    const q = queue();
    q.add('ns/a');
    await q.get();
    q.done('ns/a');
    assert.equal(q.length, 0);
  });

  it('addAfter adds the key once the delay has passed', (t) => {
    fakeTime(t);
    const q = queue();
    q.addAfter('ns/a', 1000);
    assert.equal(q.length, 0);
    t.mock.timers.tick(999);
    assert.equal(q.length, 0);
    t.mock.timers.tick(1);
    assert.equal(q.length, 1);
  });

  it('addAfter with no delay adds at once', () => {
    const q = queue();
    q.addAfter('ns/a', 0);
    q.addAfter('ns/b', -5);
    assert.equal(q.length, 2);
  });

  it('an earlier pending delay wins over a later one (whichever comes first)', async (t) => {
    fakeTime(t);
    const q = queue();
    q.addAfter('ns/a', 5000);
    q.addAfter('ns/a', 1000); // earlier: replaces the 5 s timer
    q.addAfter('ns/b', 1000);
    q.addAfter('ns/b', 5000); // later: ignored
    t.mock.timers.tick(1000);
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'ns/a');
    assert.equal(await q.get(), 'ns/b');
    q.done('ns/a');
    q.done('ns/b');
    t.mock.timers.tick(10_000);
    assert.equal(q.length, 0, 'no second add from the replaced or ignored delays');
  });

  it('addRateLimited waits as long as the limiter says, and forget/failures go to the limiter', (t) => {
    fakeTime(t);
    const calls: string[] = [];
    const limiter: RateLimiter = {
      when: (key) => (calls.push(`when ${key}`), 250),
      forget: (key) => void calls.push(`forget ${key}`),
      failures: () => 7,
    };
    const q = new WorkQueue(limiter);
    q.addRateLimited('ns/a');
    t.mock.timers.tick(249);
    assert.equal(q.length, 0);
    t.mock.timers.tick(1);
    assert.equal(q.length, 1);
    q.forget('ns/a');
    assert.equal(q.failures('ns/a'), 7);
    assert.deepEqual(calls, ['when ns/a', 'forget ns/a']);
  });

  it('addRateLimited backs off further with each failure of a key, until forgotten', async (t) => {
    fakeTime(t);
    const q = new WorkQueue(new ExponentialBackoff(100, 10_000));
    const failOnce = async (expectedDelay: number) => {
      q.addRateLimited('ns/a');
      t.mock.timers.tick(expectedDelay - 1);
      assert.equal(q.length, 0, `not before ${expectedDelay} ms`);
      t.mock.timers.tick(1);
      assert.equal(q.length, 1, `after ${expectedDelay} ms`);
      assert.equal(await q.get(), 'ns/a');
      q.done('ns/a');
    };
    await failOnce(100);
    await failOnce(200);
    await failOnce(400);
    assert.equal(q.failures('ns/a'), 3);
    q.forget('ns/a');
    assert.equal(q.failures('ns/a'), 0);
    await failOnce(100);
  });

  it('shutDownWithDrain wakes idle workers, ignores new keys, and waits for keys in progress', async (t) => {
    fakeTime(t);
    const q = queue();
    q.add('ns/a');
    assert.equal(await q.get(), 'ns/a');
    q.addAfter('ns/later', 10);
    const idle = track(q.get());
    const drained = track(q.shutDownWithDrain());
    await flush();
    assert.deepEqual(idle, { settled: true, value: undefined }, 'an idle worker is told to stop');
    assert.equal(drained.settled, false, 'ns/a is still being processed');

    q.add('ns/b');
    q.addAfter('ns/c', 0);
    t.mock.timers.tick(100);
    assert.equal(q.length, 0, 'no keys are accepted while shutting down');

    q.done('ns/a');
    await flush();
    assert.equal(drained.settled, true);
    assert.equal(await q.get(), undefined);
  });

  it('shutDownWithDrain still hands out keys that were queued, then undefined', async () => {
    const q = queue();
    q.add('ns/a');
    await q.shutDownWithDrain();
    assert.equal(await q.get(), 'ns/a');
    assert.equal(await q.get(), undefined);
  });

  it('reports adds, waits and depth to its observer', async () => {
    const seen = { added: 0, waited: 0, retried: 0, depths: [] as number[] };
    const q = new WorkQueue(new ExponentialBackoff(), {
      added: () => void seen.added++,
      waited: (s) => void (s >= 0 && seen.waited++),
      retried: () => void seen.retried++,
      depth: (d) => void seen.depths.push(d),
    });
    q.add('ns/a');
    q.add('ns/a');
    q.add('ns/b');
    await q.get();
    assert.equal(seen.added, 2);
    assert.equal(seen.waited, 1);
    assert.equal(seen.depths.at(-1), 1);
  });
});
