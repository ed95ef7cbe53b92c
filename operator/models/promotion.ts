// Promotion policies (pure): whether a newly registered model version meets a Pipeline's
// `promotion` conditions (e.g. accuracy >= 0.9) and, if asked, beats the version now in the
// target stage. The answer carries a sentence a person can read in the version's history.
// NOTE: a rule for Production must name at least one `when` condition: without one it would
// promote every registered version (betterThanCurrent alone passes when nothing is in
// Production yet), so it is refused here, where every automatic promotion is decided.
import type { Promotion } from '../api/v1alpha1/pipeline.ts';

export interface PromotionDecision {
  promote: boolean;
  reason: string;
}

const holds = (value: number, operator: Promotion['when'][number]['operator'], bound: number): boolean => {
  switch (operator) {
    case '>=': return value >= bound;
    case '>': return value > bound;
    case '<=': return value <= bound;
    case '<': return value < bound;
  }
};

/**
 * `current` is the version now in the policy's stage (name and metrics), if any.
 */
export function evaluatePromotion(
  policy: Promotion,
  metrics: Record<string, number>,
  current: { name: string; metrics: Record<string, number> } | undefined,
): PromotionDecision {
  if (policy.stage === 'Production' && policy.when.length === 0) {
    return { promote: false, reason: 'a promotion rule for Production needs at least one condition in `when`' };
  }
  const met: string[] = [];
  for (const condition of policy.when) {
    const value = metrics[condition.metric];
    if (value === undefined) return { promote: false, reason: `metric ${condition.metric} was not reported` };
    const text = `${condition.metric} ${value} ${condition.operator} ${condition.value}`;
    if (!holds(value, condition.operator, condition.value)) return { promote: false, reason: `not ${text}` };
    met.push(text);
  }
  const better = policy.betterThanCurrent;
  if (better && current) {
    const mine = metrics[better.metric];
    const theirs = current.metrics[better.metric];
    if (mine === undefined) return { promote: false, reason: `metric ${better.metric} was not reported` };
    if (theirs !== undefined) {
      const higher = (better.direction ?? 'Higher') === 'Higher';
      const wins = higher ? mine > theirs : mine < theirs;
      const comparison = `${better.metric} ${mine} ${higher ? '>' : '<'} ${theirs} of ${current.name}`;
      if (!wins) return { promote: false, reason: `not ${comparison}` };
      met.push(comparison);
    }
  }
  return { promote: true, reason: met.length > 0 ? met.join(' and ') : 'no conditions' };
}
