import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, digestOf, sha256Hex } from './canonical-json.ts';

describe('canonicalJson', () => {
  const cases: Array<[string, unknown, string]> = [
    ['null', null, 'null'],
    ['a string', 'a"b', '"a\\"b"'],
    ['a number', 0.25, '0.25'],
    ['a boolean', false, 'false'],
    ['undefined at the top is null', undefined, 'null'],
    ['keys sorted, no whitespace', { b: 1, a: 2, c: { z: true, y: null } }, '{"a":2,"b":1,"c":{"y":null,"z":true}}'],
    ['nested arrays keep their order', { m: [[3, 1], [{ b: 1, a: [2, [1]] }]] }, '{"m":[[3,1],[{"a":[2,[1]],"b":1}]]}'],
    ['undefined members dropped', { a: 1, b: undefined, c: { d: undefined } }, '{"a":1,"c":{}}'],
    ['undefined in arrays is null, as in JSON', [1, undefined, 2], '[1,null,2]'],
    ['keys sorted by code unit', { b: 1, B: 2, a: 3, _: 4 }, '{"B":2,"_":4,"a":3,"b":1}'],
    ['empty containers', { a: [], b: {} }, '{"a":[],"b":{}}'],
  ];
  for (const [name, value, expected] of cases) it(name, () => assert.equal(canonicalJson(value), expected));

  it('does not depend on key order', () => {
    const one = { steps: [{ name: 'a', image: 'x', env: [{ name: 'E', value: '1' }] }], parameters: [{ type: 'int', name: 'n' }] };
    const two = { parameters: [{ name: 'n', type: 'int' }], steps: [{ env: [{ value: '1', name: 'E' }], image: 'x', name: 'a' }] };
    assert.equal(canonicalJson(one), canonicalJson(two));
    assert.equal(digestOf(one), digestOf(two));
  });

  it('round-trips through JSON.parse', () => {
    const value = { z: [1, 'two', { three: 3 }], a: { nested: { deep: [true, null] } } };
    assert.deepEqual(JSON.parse(canonicalJson(value)), value);
  });

  const unserialisable: Array<[string, unknown]> = [
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity inside an object', { a: { b: Number.NEGATIVE_INFINITY } }],
    ['NaN inside an array', [1, Number.NaN]],
  ];
  for (const [name, value] of unserialisable) {
    it(`rejects ${name}`, () => assert.throws(() => canonicalJson(value), /cannot serialise/));
  }
});

describe('digestOf', () => {
  it('is sha256: followed by 64 hex digits', () => {
    assert.match(digestOf({ a: 1 }), /^sha256:[0-9a-f]{64}$/);
  });

  it('hashes the canonical JSON', () => {
    // sha256("{}"), a well-known test vector.
    assert.equal(digestOf({ only: undefined }), 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    assert.equal(sha256Hex('{}'), '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  });

  it('differs when a value differs', () => {
    assert.notEqual(digestOf({ a: 1 }), digestOf({ a: 2 }));
    assert.notEqual(digestOf([1, 2]), digestOf([2, 1]));
    assert.notEqual(digestOf({ a: '1' }), digestOf({ a: 1 }));
  });
});
