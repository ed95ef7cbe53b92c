import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket } from './token-bucket.ts';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('TokenBucket', () => {
  it('allows a burst at once, then one request per 1/qps, in arrival order', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let now = 0;
    const advance = (ms: number) => {
      now += ms;
      t.mock.timers.tick(ms);
    };
    const bucket = new TokenBucket(10, 3, () => now); // a token every 100 ms
    const order: number[] = [];
    for (const i of [1, 2, 3, 4, 5]) void bucket.take().then(() => order.push(i));

    await flush();
    assert.deepEqual(order, [1, 2, 3], 'the burst goes through at once');
    advance(99);
    await flush();
    assert.deepEqual(order, [1, 2, 3]);
    advance(1);
    await flush();
    assert.deepEqual(order, [1, 2, 3, 4]);
    advance(50);
    await flush();
    assert.deepEqual(order, [1, 2, 3, 4]);
    advance(50);
    await flush();
    assert.deepEqual(order, [1, 2, 3, 4, 5]);
  });

  it('refills while idle, but never beyond the burst', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let now = 0;
    const bucket = new TokenBucket(10, 2, () => now);
    await bucket.take();
    await bucket.take();
    now += 60_000; // long idle: would be 600 tokens without the cap
    let done = 0;
    for (let i = 0; i < 3; i++) void bucket.take().then(() => done++);
    await flush();
    assert.equal(done, 2);
    now += 100;
    t.mock.timers.tick(100);
    await flush();
    assert.equal(done, 3);
  });

  const invalid: Array<[number, number]> = [[0, 1], [-1, 1], [Number.NaN, 1], [1, 0], [1, 0.5]];
  for (const [qps, burst] of invalid) {
    it(`rejects qps=${qps} burst=${burst}`, () => {
      assert.throws(() => new TokenBucket(qps, burst), /invalid rate limit/);
    });
  }
});
