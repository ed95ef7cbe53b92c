import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_LABEL_VALUE, labelValue, shortenName, stepPodName } from './names.ts';

describe('shortenName', () => {
  it('leaves names of at most 63 characters alone', () => {
    const name = 'a'.repeat(63);
    assert.equal(shortenName(name), name);
    assert.equal(shortenName('r1-a-1'), 'r1-a-1');
  });

  it('shortens longer names to 63 characters: a readable prefix, a dash and 10 hex of a hash', () => {
    const name = `${'a'.repeat(60)}-bcdef`;
    const short = shortenName(name);
    assert.equal(short.length, MAX_LABEL_VALUE);
    assert.match(short, /^a{52}-[0-9a-f]{10}$/);
  });

  it('is stable, and different long names get different short names', () => {
    const one = `${'x'.repeat(70)}-one`;
    const two = `${'x'.repeat(70)}-two`;
    assert.equal(shortenName(one), shortenName(one));
    assert.notEqual(shortenName(one), shortenName(two));
  });

  it('does not leave a dash or dot before the hash separator', () => {
    // The cut falls right after "-." in the prefix.
    const name = `${'a'.repeat(50)}-.${'b'.repeat(30)}`;
    const short = shortenName(name);
    assert.match(short, /^a{50}-[0-9a-f]{10}$/);
  });

  it('honours a custom maximum', () => {
    const short = shortenName('abcdefghijklmnopqrstuvwxyz', 20);
    assert.equal(short.length, 20);
    assert.match(short, /^abcdefghi-[0-9a-f]{10}$/);
  });
});

describe('stepPodName', () => {
  const cases: Array<[string, string, number, string | RegExp]> = [
    ['r1', 'train', 1, 'r1-train-1'],
    ['nightly', 'evaluate', 12, 'nightly-evaluate-12'],
    ['r'.repeat(60), 'train', 1, /^r{52}-[0-9a-f]{10}$/],
  ];
  for (const [run, step, attempt, expected] of cases) {
    it(`${run.slice(0, 12)}… ${step} ${attempt}`, () => {
      const name = stepPodName(run, step, attempt);
      assert.ok(name.length <= 63);
      if (typeof expected === 'string') assert.equal(name, expected);
      else assert.match(name, expected);
    });
  }

  it('gives each attempt of a long-named run its own name', () => {
    const run = 'r'.repeat(80);
    assert.notEqual(stepPodName(run, 'train', 1), stepPodName(run, 'train', 2));
  });
});

describe('labelValue', () => {
  it('is the name when it fits and a shortened name otherwise', () => {
    assert.equal(labelValue('train'), 'train');
    assert.ok(labelValue('p'.repeat(253)).length <= 63);
  });
});
