// What a step takes from other steps (pure): the steps whose outputs it reads, whose results its
// command, args, env or condition use, or whose result it fans out over. Such a step must be
// upstream, and when one of them did not succeed the step is skipped (docs/control-flow.md).
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { referencesIn, type References } from '../pipeline-run/variables.ts';
import { referencedSteps } from './expressions.ts';

/** The texts of a step that may hold $(…) variables. */
export const variableTexts = (step: StepSpec): string[] =>
  [...(step.command ?? []), ...(step.args ?? []), ...(step.env ?? []).map((e) => e.value ?? '')];

export const variablesOf = (step: StepSpec): References => referencesIn(variableTexts(step));

/** Steps whose outputs or results this step uses. */
export function consumedSteps(step: StepSpec): Set<string> {
  const names = new Set<string>();
  for (const input of step.inputs ?? []) if (input.from) names.add(input.from.step);
  for (const ref of variablesOf(step).results) names.add(ref.step);
  if (step.when) for (const name of referencedSteps(step.when)) names.add(name);
  if (step.forEach?.result) names.add(step.forEach.result.step);
  return names;
}
