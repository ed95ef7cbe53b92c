import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LruCache } from './config-cache.ts';

describe('LruCache', () => {
  it('drops the least recently used entry past its capacity', () => {
    const cache = new LruCache<number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    assert.equal(cache.get('a'), 1); // a is now the most recent
    cache.set('c', 3);
    assert.deepEqual([cache.get('a'), cache.get('b'), cache.get('c')], [1, undefined, 3]);
  });

  it('keeps the total weight within its budget, and never keeps a value heavier than all of it', () => {
    const cache = new LruCache<string>(100, { maxWeight: 10, weigh: (v) => v.length });
    cache.set('a', 'xxxx');
    cache.set('b', 'yyyy');
    cache.set('c', 'zzzz'); // 12 > 10: a goes
    assert.deepEqual([cache.get('a'), cache.get('b'), cache.get('c')], [undefined, 'yyyy', 'zzzz']);
    cache.set('d', 'w'.repeat(11));
    assert.equal(cache.get('d'), undefined);
    assert.equal(cache.size, 2);
    cache.set('b', 'y'); // replacing an entry gives back its weight
    cache.set('e', 'vvvvv');
    assert.deepEqual([cache.get('b'), cache.get('c'), cache.get('e')], ['y', 'zzzz', 'vvvvv']);
  });
});
