// A step's cache key (pure): sha256 over everything that determines its outputs: the image
// digest, command, args, env, the parameters it uses, its inputs' digests, its declared outputs
// and its cache version. Components are hashed one by one too, so a miss can be explained by
// naming the components that differ from the nearest earlier execution.
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec } from '../../agent/protocol.ts';
import { canonicalJson, digestOf, sha256Hex } from '../../configuration/canonical-json.ts';
import { referencedParameters } from '../pipeline/validate.ts';
import { variablesOf } from '../pipeline/step-references.ts';
import type { StepVariables } from './variables.ts';

export interface CacheKey {
  key: string;
  /** Component name → sha256 of its canonical value. */
  components: Record<string, string>;
}

/** Whether a step's results may be reused, by its own policy and the run's. */
export function isCacheable(step: StepSpec, runPolicy: 'Enabled' | 'Disabled' | undefined): boolean {
  return runPolicy !== 'Disabled' && (step.cache?.policy ?? 'Enabled') === 'Enabled';
}

/** maxAge such as "7d" or "1h30m" in milliseconds. */
export function maxAgeMs(step: StepSpec): number {
  const text = step.cache?.maxAge;
  if (!text) return Infinity;
  const unit: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return [...text.matchAll(/(\d+)([smhd])/g)].reduce((sum, [, n, u]) => sum + Number(n) * unit[u!]!, 0);
}

/**
 * NOTE: the results a step uses are a component only when it uses any, so the keys of steps
 * that use none stay what they were before results existed (their cached results stay valid).
 */
export function cacheKeyOf(step: StepSpec, parameters: Map<string, string>, inputs: InputSpec[], variables: Omit<StepVariables, 'params'> = {}): CacheKey {
  const used = variablesOf(step);
  // A forEach over a parameter or result depends on its value as much as a variable does.
  const forEachResult = step.forEach?.result ? [`${step.forEach.result.step}.${step.forEach.result.name}`] : [];
  const usedResults = [...new Set([...used.results.map((r) => `${r.step}.${r.name}`), ...forEachResult])].sort();
  const results = variables.results;
  // A finally step's outputs depend on how the run went: $(run.…) and its environment.
  const run = variables.run ? { status: variables.run.status, failedSteps: variables.run.failedSteps } : undefined;
  const usedParameters = [...new Set([...(step.parameters ?? []), ...referencedParameters(step), ...(step.forEach?.parameter ? [step.forEach.parameter] : [])])].sort();
  const values: Record<string, unknown> = {
    image: step.image,
    command: step.command ?? [],
    args: step.args ?? [],
    env: step.env ?? [],
    parameters: Object.fromEntries(usedParameters.map((name) => [name, parameters.get(name) ?? null])),
    inputs: Object.fromEntries(inputs.map((i) => [i.name, i.contentDigest ?? i.digest])),
    outputs: (step.outputs ?? []).map((o) => [o.name, o.type]),
    version: step.cache?.version ?? '',
    ...(usedResults.length > 0 ? { results: Object.fromEntries(usedResults.map((key) => [key, results?.get(key) ?? null])) } : {}),
    ...(run ? { run } : {}),
    // A forEach step's outputs are its items': the list and the ratio decide them.
    ...(step.forEach ? { forEach: { items: step.forEach.items ?? null, minSuccessRatio: step.forEach.minSuccessRatio ?? 1 } } : {}),
    // Only when set, so the keys of steps without volumes stay as they were.
    ...(step.volumes?.length || step.volumeMounts?.length ? { volumes: { volumes: step.volumes ?? [], mounts: step.volumeMounts ?? [] } } : {}),
    ...(step.results?.length ? { declaredResults: step.results.map((r) => [r.name, r.type ?? 'string']) } : {}),
  };
  const components = Object.fromEntries(Object.entries(values).map(([name, value]) => [name, sha256Hex(canonicalJson(value)).slice(0, 16)]));
  return { key: digestOf(values), components };
}
