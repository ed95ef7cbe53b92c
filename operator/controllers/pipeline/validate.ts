// What a Pipeline's schema cannot say, checked here: dependsOn names real steps, no cycles,
// inputs come from an upstream step's declared output, parameters exist and defaults fit
// their types. The first problem found becomes the Ready=False reason and message.
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineSpec } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter } from '../pipeline-run/parameters.ts';
import { findCycle, upstreamOf } from './dag.ts';

export interface ValidationProblem {
  reason: string;
  message: string;
}

const PARAM_REFERENCE = /\$\(params\.([a-zA-Z_][a-zA-Z0-9_-]*)\)/g;

/** Names of the parameters a step's command, args and env values refer to with $(params.x). */
export function referencedParameters(step: PipelineSpec['steps'][number]): string[] {
  const texts = [...(step.command ?? []), ...(step.args ?? []), ...(step.env ?? []).map((e) => e.value ?? '')];
  return [...new Set(texts.flatMap((t) => [...t.matchAll(PARAM_REFERENCE)].map((m) => m[1]!)))];
}

export function validatePipeline(spec: PipelineSpec): ValidationProblem | undefined {
  const steps = spec.steps;
  const stepNames = new Set(steps.map((s) => s.name));
  const parameters = new Map((spec.parameters ?? []).map((p) => [p.name, p]));

  for (const p of parameters.values()) {
    if (p.default === undefined) continue;
    const coerced = coerceParameter(p.type ?? 'string', p.default);
    if ('error' in coerced) {
      return { reason: Reasons.InvalidDefault, message: `parameter "${p.name}": default ${coerced.error}` };
    }
  }

  for (const step of steps) {
    for (const dep of step.dependsOn ?? []) {
      if (!stepNames.has(dep)) {
        return { reason: Reasons.UnknownDependency, message: `step "${step.name}" depends on unknown step "${dep}"` };
      }
    }
  }

  const cycle = findCycle(steps);
  if (cycle) return { reason: Reasons.DependencyCycle, message: `dependency cycle: ${cycle.join(' → ')}` };

  const outputs = new Map(steps.map((s) => [s.name, new Set((s.outputs ?? []).map((o) => o.name))]));
  for (const step of steps) {
    const upstream = upstreamOf(steps, step.name);
    for (const input of step.inputs ?? []) {
      // Model and other-pipeline inputs are resolved when a run is frozen.
      if (!input.from) continue;
      const { step: from, output } = input.from;
      const where = `step "${step.name}" input "${input.name}"`;
      if (!stepNames.has(from)) return { reason: Reasons.InvalidInput, message: `${where} reads from unknown step "${from}"` };
      if (!upstream.has(from)) {
        return { reason: Reasons.InvalidInput, message: `${where} reads from step "${from}", which is not upstream of it (add it to dependsOn)` };
      }
      if (!outputs.get(from)?.has(output)) {
        return { reason: Reasons.InvalidInput, message: `${where} reads output "${output}", which step "${from}" does not declare` };
      }
    }
    for (const name of [...(step.parameters ?? []), ...referencedParameters(step)]) {
      if (!parameters.has(name)) {
        return { reason: Reasons.UnknownParameter, message: `step "${step.name}" uses parameter "${name}", which the pipeline does not declare` };
      }
    }
  }
  return undefined;
}
