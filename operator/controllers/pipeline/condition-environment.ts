// What a step's `when` and $(steps.…) variables can see (pure): the pipeline's parameters and
// the declared results of the steps before it: upstream main steps for a main step; every main
// step and the upstream finally steps for a finally step. The validator type-checks against it,
// the planner evaluates against the stored values, so both agree on what a condition sees.
import type { PipelineSpec, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { upstreamOf } from './dag.ts';
import type { ConditionValues, DeclaredValue, ExpressionEnvironment, ValueType } from './expressions.ts';

/** Every step of a pipeline, main then finally, and how many are main. */
export const allSteps = (spec: PipelineSpec): { specs: StepSpec[]; main: number } =>
  ({ specs: [...spec.steps, ...(spec.finally ?? [])], main: spec.steps.length });

/** The steps a step may take outputs and results from. */
export function visibleSteps(spec: PipelineSpec, name: string): Set<string> {
  if (spec.steps.some((s) => s.name === name)) return upstreamOf(spec.steps, name);
  return new Set([...spec.steps.map((s) => s.name), ...upstreamOf(spec.finally ?? [], name)]);
}

export function conditionEnvironment(spec: PipelineSpec, name: string): ExpressionEnvironment {
  const params = new Map<string, DeclaredValue>((spec.parameters ?? []).map((p) => [p.name, { type: p.type ?? 'string' }]));
  const visible = visibleSteps(spec, name);
  const results = new Map<string, Map<string, DeclaredValue>>();
  for (const step of allSteps(spec).specs) {
    // A visible step with no results is there too, so an error says "no such result", not "no such step".
    if (!visible.has(step.name)) continue;
    results.set(step.name, new Map((step.results ?? []).map((r) => [r.name, { type: r.type ?? 'string', ...(step.forEach ? { list: true } : {}) }])));
  }
  return { params, results };
}

/** The stored values a condition is evaluated against: parameters, and each visible step's results (a list per item for a forEach step). */
export function conditionValues(
  env: ExpressionEnvironment,
  params: Array<{ name: string; type: ValueType; value: string }>,
  resultsOf: (step: string) => Record<string, string> | Array<Record<string, string> | undefined> | undefined,
): ConditionValues {
  const results: ConditionValues['results'] = new Map();
  for (const [step, declared] of env.results) {
    const stored = resultsOf(step);
    if (stored === undefined) continue;
    const values = new Map<string, { type: ValueType; value: string } | { type: ValueType; list: string[] }>();
    for (const [name, { type }] of declared) {
      if (Array.isArray(stored)) values.set(name, { type, list: stored.flatMap((item) => (item?.[name] === undefined ? [] : [item[name]!])) });
      else if (stored[name] !== undefined) values.set(name, { type, value: stored[name]! });
    }
    results.set(step, values);
  }
  return { params: new Map(params.map((p) => [p.name, { type: p.type, value: p.value }])), results };
}
