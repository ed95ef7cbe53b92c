import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findCycle, upstreamOf } from './dag.ts';

const s = (name: string, ...dependsOn: string[]) => ({ name, dependsOn });

describe('findCycle', () => {
  const cases: Array<{ name: string; steps: ReturnType<typeof s>[]; cycle: string[] | undefined }> = [
    { name: 'a diamond has none', steps: [s('a'), s('b', 'a'), s('c', 'a'), s('d', 'b', 'c')], cycle: undefined },
    { name: 'a single step has none', steps: [s('a')], cycle: undefined },
    { name: 'unknown dependencies are ignored here', steps: [s('a', 'ghost')], cycle: undefined },
    { name: 'a 3-cycle, in flow order', steps: [s('x', 'z'), s('y', 'x'), s('z', 'y')], cycle: ['x', 'y', 'z', 'x'] },
    { name: 'a 2-cycle', steps: [s('a', 'b'), s('b', 'a')], cycle: ['a', 'b', 'a'] },
    { name: 'a self-loop', steps: [s('a', 'a')], cycle: ['a', 'a'] },
    {
      name: 'a cycle that does not involve the first step',
      steps: [s('start'), s('p', 'start', 'r'), s('q', 'p'), s('r', 'q'), s('end', 'r')],
      cycle: ['p', 'q', 'r', 'p'],
    },
    {
      name: 'a cycle reached through a step outside it names only the cycle',
      steps: [s('tail', 'q'), s('q', 'r'), s('r', 'q')],
      cycle: ['q', 'r', 'q'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(findCycle(c.steps), c.cycle));
  }

  it('reports every edge of the cycle in the direction work flows', () => {
    const steps = [s('x', 'z'), s('y', 'x'), s('z', 'y'), s('w', 'y')];
    const cycle = findCycle(steps)!;
    const deps = new Map(steps.map((st) => [st.name, st.dependsOn]));
    for (let i = 0; i + 1 < cycle.length; i++) {
      // cycle[i] → cycle[i+1] means cycle[i+1] depends on cycle[i].
      assert.ok(deps.get(cycle[i + 1]!)?.includes(cycle[i]!), `${cycle[i]} → ${cycle[i + 1]}`);
    }
  });
});

describe('upstreamOf', () => {
  const steps = [s('a'), s('b', 'a'), s('c', 'a'), s('d', 'b', 'c'), s('e', 'd'), s('lone')];
  const cases: Array<[string, string[]]> = [
    ['a', []],
    ['b', ['a']],
    ['d', ['a', 'b', 'c']],
    ['e', ['a', 'b', 'c', 'd']],
    ['lone', []],
    ['unknown', []],
  ];
  for (const [name, expected] of cases) {
    it(`of ${name} is [${expected.join(', ')}] (transitive, not itself)`, () => {
      assert.deepEqual([...upstreamOf(steps, name)].sort(), expected);
    });
  }

  it('terminates on a cycle', () => {
    assert.deepEqual([...upstreamOf([s('a', 'b'), s('b', 'a')], 'a')].sort(), ['a', 'b']);
  });
});
