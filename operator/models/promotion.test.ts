import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Promotion } from '../api/v1alpha1/pipeline.ts';
import { evaluatePromotion, type PromotionDecision } from './promotion.ts';

type Condition = Promotion['when'][number];

const policy = (when: Condition[], betterThanCurrent?: Promotion['betterThanCurrent']): Promotion => ({
  model: 'iris',
  stage: 'Production',
  when,
  ...(betterThanCurrent ? { betterThanCurrent } : {}),
});
const current = (metrics: Record<string, number>) => ({ name: 'iris-v1', metrics });

describe('evaluatePromotion: operators', () => {
  // [operator, bound, value, holds]
  const cases: Array<[Condition['operator'], number, number, boolean]> = [
    ['>=', 0.9, 0.95, true],
    ['>=', 0.9, 0.9, true],
    ['>=', 0.9, 0.85, false],
    ['>', 0.9, 0.95, true],
    ['>', 0.9, 0.9, false],
    ['>', 0.9, 0.85, false],
    ['<=', 0.2, 0.1, true],
    ['<=', 0.2, 0.2, true],
    ['<=', 0.2, 0.3, false],
    ['<', 0.2, 0.1, true],
    ['<', 0.2, 0.2, false],
    ['<', 0.2, 0.3, false],
  ];
  for (const [operator, bound, value, holds] of cases) {
    const text = `m ${value} ${operator} ${bound}`;
    const expected: PromotionDecision = holds ? { promote: true, reason: text } : { promote: false, reason: `not ${text}` };
    it(`${value} ${operator} ${bound} → ${holds}`, () => {
      assert.deepEqual(evaluatePromotion(policy([{ metric: 'm', operator, value: bound }]), { m: value }, undefined), expected);
    });
  }
});

describe('evaluatePromotion: conditions', () => {
  it('joins every met condition with "and"', () => {
    const decision = evaluatePromotion(
      policy([{ metric: 'accuracy', operator: '>=', value: 0.9 }, { metric: 'loss', operator: '<', value: 0.3 }]),
      { accuracy: 0.95, loss: 0.25, f1: 0.5 },
      undefined,
    );
    assert.deepEqual(decision, { promote: true, reason: 'accuracy 0.95 >= 0.9 and loss 0.25 < 0.3' });
  });

  it('stops at the first condition that does not hold', () => {
    const decision = evaluatePromotion(
      policy([{ metric: 'accuracy', operator: '>=', value: 0.9 }, { metric: 'loss', operator: '<', value: 0.3 }, { metric: 'f1', operator: '>', value: 0.8 }]),
      { accuracy: 0.95, loss: 0.4 },
      undefined,
    );
    assert.deepEqual(decision, { promote: false, reason: 'not loss 0.4 < 0.3' });
  });

  it('refuses when a metric was not reported', () => {
    const decision = evaluatePromotion(policy([{ metric: 'accuracy', operator: '>=', value: 0.9 }]), { loss: 0.1 }, undefined);
    assert.deepEqual(decision, { promote: false, reason: 'metric accuracy was not reported' });
  });

  it('reports a missing metric even after met conditions', () => {
    const decision = evaluatePromotion(
      policy([{ metric: 'accuracy', operator: '>=', value: 0.9 }, { metric: 'loss', operator: '<', value: 0.3 }]),
      { accuracy: 0.95 },
      undefined,
    );
    assert.deepEqual(decision, { promote: false, reason: 'metric loss was not reported' });
  });

  it('counts a metric of 0 as reported', () => {
    const decision = evaluatePromotion(policy([{ metric: 'loss', operator: '<=', value: 0 }]), { loss: 0 }, undefined);
    assert.deepEqual(decision, { promote: true, reason: 'loss 0 <= 0' });
  });

  it('promotes to Staging with "no conditions" when there are none', () => {
    const staging = { ...policy([]), stage: 'Staging' as const };
    assert.deepEqual(evaluatePromotion(staging, {}, undefined), { promote: true, reason: 'no conditions' });
    assert.deepEqual(evaluatePromotion(staging, { accuracy: 0.1 }, current({ accuracy: 0.9 })), { promote: true, reason: 'no conditions' });
  });

  describe('refuses a Production rule without conditions, whatever the metrics', () => {
    const refused: PromotionDecision = { promote: false, reason: 'a promotion rule for Production needs at least one condition in `when`' };
    // [name, betterThanCurrent, metrics, current holder]
    const cases: Array<[string, Promotion['betterThanCurrent'], Record<string, number>, ReturnType<typeof current> | undefined]> = [
      ['no metrics, nothing in Production', undefined, {}, undefined],
      ['good metrics, a worse holder', undefined, { accuracy: 0.99 }, current({ accuracy: 0.5 })],
      ['betterThanCurrent alone, nothing in Production (would pass vacuously)', { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.1 }, undefined],
      ['betterThanCurrent alone, a holder without the metric', { metric: 'loss', direction: 'Lower' }, { loss: 0.1 }, current({ accuracy: 0.9 })],
      ['betterThanCurrent alone, beating the holder', { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.95 }, current({ accuracy: 0.93 })],
    ];
    for (const [name, better, metrics, holder] of cases) {
      it(name, () => assert.deepEqual(evaluatePromotion(policy([], better), metrics, holder), refused));
    }
  });
});

describe('evaluatePromotion: betterThanCurrent', () => {
  const accuracyOver = [{ metric: 'accuracy', operator: '>=' as const, value: 0.9 }];

  // [name, betterThanCurrent, metrics, current holder, decision]
  const cases: Array<[string, Promotion['betterThanCurrent'], Record<string, number>, ReturnType<typeof current> | undefined, PromotionDecision]> = [
    [
      'Higher (explicit): beats the current holder',
      { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.95 }, current({ accuracy: 0.93 }),
      { promote: true, reason: 'accuracy 0.95 >= 0.9 and accuracy 0.95 > 0.93 of iris-v1' },
    ],
    [
      'Higher (the default): beats the current holder',
      { metric: 'accuracy' } as Promotion['betterThanCurrent'], { accuracy: 0.95 }, current({ accuracy: 0.93 }),
      { promote: true, reason: 'accuracy 0.95 >= 0.9 and accuracy 0.95 > 0.93 of iris-v1' },
    ],
    [
      'Higher: worse than the current holder',
      { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.92 }, current({ accuracy: 0.93 }),
      { promote: false, reason: 'not accuracy 0.92 > 0.93 of iris-v1' },
    ],
    [
      'Higher: a tie does not win',
      { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.93 }, current({ accuracy: 0.93 }),
      { promote: false, reason: 'not accuracy 0.93 > 0.93 of iris-v1' },
    ],
    [
      'Lower: beats the current holder',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95, loss: 0.1 }, current({ loss: 0.2 }),
      { promote: true, reason: 'accuracy 0.95 >= 0.9 and loss 0.1 < 0.2 of iris-v1' },
    ],
    [
      'Lower: worse than the current holder',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95, loss: 0.3 }, current({ loss: 0.2 }),
      { promote: false, reason: 'not loss 0.3 < 0.2 of iris-v1' },
    ],
    [
      'Lower: a tie does not win',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95, loss: 0.2 }, current({ loss: 0.2 }),
      { promote: false, reason: 'not loss 0.2 < 0.2 of iris-v1' },
    ],
    [
      'no current holder: only the conditions count',
      { metric: 'accuracy', direction: 'Higher' }, { accuracy: 0.95 }, undefined,
      { promote: true, reason: 'accuracy 0.95 >= 0.9' },
    ],
    [
      'no current holder: the compared metric need not be reported',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95 }, undefined,
      { promote: true, reason: 'accuracy 0.95 >= 0.9' },
    ],
    [
      'the current holder lacks the metric: nothing to beat',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95, loss: 0.3 }, current({ accuracy: 0.99 }),
      { promote: true, reason: 'accuracy 0.95 >= 0.9' },
    ],
    [
      'the new version lacks the compared metric',
      { metric: 'loss', direction: 'Lower' }, { accuracy: 0.95 }, current({ loss: 0.2 }),
      { promote: false, reason: 'metric loss was not reported' },
    ],
  ];
  for (const [name, better, metrics, holder, expected] of cases) {
    it(name, () => {
      assert.deepEqual(evaluatePromotion(policy(accuracyOver, better), metrics, holder), expected);
    });
  }

  it('does not compare when a condition already failed', () => {
    const decision = evaluatePromotion(policy(accuracyOver, { metric: 'accuracy', direction: 'Higher' }), { accuracy: 0.85 }, current({ accuracy: 0.5 }));
    assert.deepEqual(decision, { promote: false, reason: 'not accuracy 0.85 >= 0.9' });
  });

  it('gives the comparison alone as the reason when a Staging rule has no conditions', () => {
    const staging = { ...policy([], { metric: 'accuracy', direction: 'Higher' }), stage: 'Staging' as const };
    const decision = evaluatePromotion(staging, { accuracy: 0.95 }, current({ accuracy: 0.93 }));
    assert.deepEqual(decision, { promote: true, reason: 'accuracy 0.95 > 0.93 of iris-v1' });
  });
});
