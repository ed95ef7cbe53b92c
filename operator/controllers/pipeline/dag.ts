// Graph helpers over a Pipeline's steps (edges from dependsOn): cycle detection that names
// the cycle, and the set of steps upstream of a step.
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';

type StepLike = Pick<StepSpec, 'name' | 'dependsOn'>;

/** A dependency cycle as step names, first name repeated at the end, or undefined. */
export function findCycle(steps: StepLike[]): string[] | undefined {
  const deps = new Map(steps.map((s) => [s.name, s.dependsOn ?? []]));
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === 'done') return undefined;
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name];
    state.set(name, 'visiting');
    path.push(name);
    for (const dep of deps.get(name) ?? []) {
      if (!deps.has(dep)) continue;
      const cycle = visit(dep);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(name, 'done');
    return undefined;
  };
  for (const step of steps) {
    const cycle = visit(step.name);
    // Report the cycle in the direction work flows (dependency first).
    if (cycle) return cycle.reverse();
  }
  return undefined;
}

/** Every step reachable through dependsOn from `name` (not including itself). */
export function upstreamOf(steps: StepLike[], name: string): Set<string> {
  const deps = new Map(steps.map((s) => [s.name, s.dependsOn ?? []]));
  const seen = new Set<string>();
  const stack = [...(deps.get(name) ?? [])];
  while (stack.length > 0) {
    const next = stack.pop()!;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...(deps.get(next) ?? []));
  }
  return seen;
}
