// What a Pipeline's control flow needs beyond the schema (pure): finally steps that stand apart
// from the main DAG, results that exist upstream, conditions that compile and type-check as a
// bool over what the step can see, forEach lists of the right type, variables used where they
// mean something, and Pod names that cannot collide. validate.ts runs it after the DAG checks;
// the first problem becomes the Ready=False reason and message.
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineSpec, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter } from '../pipeline-run/parameters.ts';
import { allSteps, conditionEnvironment, visibleSteps } from './condition-environment.ts';
import { findCycle } from './dag.ts';
import { checkCondition } from './expressions.ts';
import { variablesOf } from './step-references.ts';
import type { ValidationProblem } from './validate.ts';

const problem = (reason: string, message: string): ValidationProblem => ({ reason, message });

export function controlFlowProblem(spec: PipelineSpec): ValidationProblem | undefined {
  return finallyProblem(spec) ?? allSteps(spec).specs.reduce<ValidationProblem | undefined>((found, step) => found ?? stepProblem(spec, step), undefined) ?? nameConflict(spec);
}

/** Finally steps depend only on each other, main steps never on them, and names are unique across both. */
function finallyProblem(spec: PipelineSpec): ValidationProblem | undefined {
  const finallySteps = spec.finally ?? [];
  if (finallySteps.length === 0) return undefined;
  const main = new Set(spec.steps.map((s) => s.name));
  const names = new Set(finallySteps.map((s) => s.name));
  for (const step of finallySteps) {
    if (main.has(step.name)) return problem(Reasons.InvalidFinally, `finally step "${step.name}" has the name of a main step`);
    for (const dep of step.dependsOn ?? []) {
      if (main.has(dep)) return problem(Reasons.InvalidFinally, `finally step "${step.name}" depends on main step "${dep}": finally steps run after every main step anyway (dependsOn names other finally steps)`);
      if (!names.has(dep)) return problem(Reasons.UnknownDependency, `finally step "${step.name}" depends on unknown step "${dep}"`);
    }
  }
  for (const step of spec.steps) {
    const dep = (step.dependsOn ?? []).find((d) => names.has(d));
    if (dep) return problem(Reasons.InvalidFinally, `step "${step.name}" depends on finally step "${dep}": finally steps run last`);
  }
  const cycle = findCycle(finallySteps);
  return cycle ? problem(Reasons.DependencyCycle, `dependency cycle: ${cycle.join(' → ')}`) : undefined;
}

function stepProblem(spec: PipelineSpec, step: StepSpec): ValidationProblem | undefined {
  const { specs, main } = allSteps(spec);
  const isFinally = specs.indexOf(step) >= main;
  const visible = visibleSteps(spec, step.name);
  const byName = new Map(specs.map((s) => [s.name, s]));
  const parameters = new Map((spec.parameters ?? []).map((p) => [p.name, p]));
  const where = `step "${step.name}"`;
  const refs = variablesOf(step);

  for (const ref of refs.results) {
    const producer = byName.get(ref.step);
    if (!producer || !visible.has(ref.step)) {
      return problem(Reasons.InvalidResultReference, `${where} uses $(steps.${ref.step}.results.${ref.name}), but step "${ref.step}" is ${producer ? 'not upstream of it (add it to dependsOn)' : 'unknown'}`);
    }
    if (!producer.results?.some((r) => r.name === ref.name)) {
      return problem(Reasons.InvalidResultReference, `${where} uses $(steps.${ref.step}.results.${ref.name}), which step "${ref.step}" does not declare`);
    }
  }
  if (isFinally) {
    // Finally steps may also read main steps' outputs.
    for (const input of step.inputs ?? []) {
      if (input.from && !visible.has(input.from.step)) return problem(Reasons.InvalidInput, `${where} input "${input.name}" reads from step "${input.from.step}", which does not run before it`);
      if (input.from && !byName.get(input.from.step)?.outputs?.some((o) => o.name === input.from!.output)) {
        return problem(Reasons.InvalidInput, `${where} input "${input.name}" reads output "${input.from.output}", which step "${input.from.step}" does not declare`);
      }
    }
    for (const name of [...(step.parameters ?? []), ...refs.params]) {
      if (!parameters.has(name)) return problem(Reasons.UnknownParameter, `${where} uses parameter "${name}", which the pipeline does not declare`);
    }
  } else if (refs.run.length > 0) {
    return problem(Reasons.InvalidFinally, `${where} uses $(run.${refs.run[0]}), which only finally steps can see`);
  }
  if (!step.forEach && refs.item.length > 0) {
    return problem(Reasons.InvalidForEach, `${where} uses $(item${refs.item[0] ? `.${refs.item[0]}` : ''}) but has no forEach`);
  }

  if (step.when) {
    const checked = checkCondition(step.when, conditionEnvironment(spec, step.name));
    if ('error' in checked) return problem(Reasons.InvalidCondition, `${where}: when "${step.when}": ${checked.error}`);
  }
  return step.forEach ? forEachProblem(spec, step, visible, byName) : undefined;
}

function forEachProblem(spec: PipelineSpec, step: StepSpec, visible: Set<string>, byName: Map<string, StepSpec>): ValidationProblem | undefined {
  const forEach = step.forEach!;
  const where = `step "${step.name}" forEach`;
  const sources = [forEach.items, forEach.parameter, forEach.result].filter((x) => x !== undefined).length;
  if (sources !== 1) return problem(Reasons.InvalidForEach, `${where}: set exactly one of items, parameter or result`);
  if ((step.outputs ?? []).some((o) => o.register)) {
    return problem(Reasons.InvalidForEach, `${where}: a forEach step cannot register models (each item would register one); register the best in a step after it`);
  }
  if (forEach.parameter !== undefined) {
    const parameter = (spec.parameters ?? []).find((p) => p.name === forEach.parameter);
    if (!parameter) return problem(Reasons.InvalidForEach, `${where}: parameter "${forEach.parameter}" is not declared`);
    if (parameter.type !== 'json') return problem(Reasons.InvalidForEach, `${where}: parameter "${forEach.parameter}" must have type json (a list), not ${parameter.type ?? 'string'}`);
    if (parameter.default !== undefined) {
      const coerced = coerceParameter('json', parameter.default);
      if ('value' in coerced && !Array.isArray(JSON.parse(coerced.value))) return problem(Reasons.InvalidForEach, `${where}: the default of parameter "${forEach.parameter}" is not a JSON list`);
    }
  }
  if (forEach.result !== undefined) {
    const { step: from, name } = forEach.result;
    if (!visible.has(from)) return problem(Reasons.InvalidForEach, `${where}: step "${from}" is ${byName.has(from) ? 'not upstream of it (add it to dependsOn)' : 'unknown'}`);
    const declared = byName.get(from)?.results?.find((r) => r.name === name);
    if (!declared) return problem(Reasons.InvalidForEach, `${where}: step "${from}" declares no result "${name}"`);
    if (declared.type !== 'json') return problem(Reasons.InvalidForEach, `${where}: result "${name}" of step "${from}" must have type json (a list), not ${declared.type ?? 'string'}`);
    if (byName.get(from)?.forEach) return problem(Reasons.InvalidForEach, `${where}: step "${from}" is itself a forEach step (fan out over a list one step makes)`);
  }
  return undefined;
}

/** Item Pods are `<run>-<step>-<index>-<attempt>`: a step named `<forEach step>-<digits>` could take one's name. */
function nameConflict(spec: PipelineSpec): ValidationProblem | undefined {
  const { specs } = allSteps(spec);
  for (const fanOut of specs.filter((s) => s.forEach)) {
    const other = specs.find((s) => s.name.startsWith(`${fanOut.name}-`) && /^\d+$/.test(s.name.slice(fanOut.name.length + 1)));
    if (other) return problem(Reasons.StepNameConflict, `step "${other.name}" could have the Pod name of an item of forEach step "${fanOut.name}"; rename one of them`);
  }
  return undefined;
}
