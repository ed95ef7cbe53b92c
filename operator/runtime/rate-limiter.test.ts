import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExponentialBackoff } from './rate-limiter.ts';

describe('ExponentialBackoff', () => {
  it('doubles the delay with each failure of a key, up to the cap', () => {
    const limiter = new ExponentialBackoff(5, 100);
    const delays = Array.from({ length: 7 }, () => limiter.when('ns/a'));
    assert.deepEqual(delays, [5, 10, 20, 40, 80, 100, 100]);
    assert.equal(limiter.failures('ns/a'), 7);
  });

  it('counts keys separately', () => {
    const limiter = new ExponentialBackoff(5, 100);
    limiter.when('ns/a');
    limiter.when('ns/a');
    assert.equal(limiter.when('ns/b'), 5);
    assert.equal(limiter.failures('ns/a'), 2);
    assert.equal(limiter.failures('ns/b'), 1);
  });

  it('forget starts a key over', () => {
    const limiter = new ExponentialBackoff(5, 100);
    limiter.when('ns/a');
    limiter.when('ns/a');
    limiter.forget('ns/a');
    assert.equal(limiter.failures('ns/a'), 0);
    assert.equal(limiter.when('ns/a'), 5);
  });

  it('stays at the cap after very many failures (no overflow to Infinity)', () => {
    const limiter = new ExponentialBackoff(5, 5 * 60_000);
    let last = 0;
    for (let i = 0; i < 2000; i++) last = limiter.when('ns/a');
    assert.equal(last, 5 * 60_000);
  });

  it('defaults to 5 ms growing to 5 minutes', () => {
    const limiter = new ExponentialBackoff();
    assert.equal(limiter.when('k'), 5);
    for (let i = 0; i < 100; i++) limiter.when('k');
    assert.equal(limiter.when('k'), 300_000);
  });
});
