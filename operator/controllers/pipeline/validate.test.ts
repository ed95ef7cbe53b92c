import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineSpec } from '../../api/v1alpha1/pipeline.ts';
import { diamond, step } from '../../../test/builders.ts';
import { referencedParameters, validatePipeline } from './validate.ts';

describe('validatePipeline', () => {
  it('accepts a valid pipeline with parameters, inputs and outputs', () => {
    const spec: PipelineSpec = {
      parameters: [
        { name: 'lr', type: 'float', default: 0.01 },
        { name: 'epochs', type: 'int', default: '3' },
        { name: 'shuffle', type: 'bool', default: true },
        { name: 'dataset', type: 'string' },
      ],
      steps: [
        step('prepare', { args: ['--data=$(params.dataset)'], outputs: [{ name: 'train-set', type: 'dataset' }] }),
        step('train', {
          dependsOn: ['prepare'],
          parameters: ['lr', 'epochs'],
          command: ['train', '--shuffle=$(params.shuffle)'],
          inputs: [{ name: 'data', from: { step: 'prepare', output: 'train-set' } }],
          outputs: [{ name: 'model', type: 'model' }],
        }),
        step('evaluate', {
          dependsOn: ['train'],
          // Upstream through train: an input may come from any step reachable through dependsOn.
          inputs: [
            { name: 'model', from: { step: 'train', output: 'model' } },
            { name: 'data', from: { step: 'prepare', output: 'train-set' } },
          ],
          env: [{ name: 'LR', value: '$(params.lr)' }, { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }],
        }),
      ],
    };
    assert.equal(validatePipeline(spec), undefined);
    assert.equal(validatePipeline({ steps: diamond() }), undefined);
  });

  const cases: Array<{ name: string; spec: PipelineSpec; reason: string; message: string | RegExp }> = [
    {
      name: 'unknown dependsOn',
      spec: { steps: [step('a'), step('b', { dependsOn: ['a', 'ghost'] })] },
      reason: Reasons.UnknownDependency,
      message: 'step "b" depends on unknown step "ghost"',
    },
    {
      name: '3-cycle, named in flow order',
      spec: { steps: [step('x', { dependsOn: ['z'] }), step('y', { dependsOn: ['x'] }), step('z', { dependsOn: ['y'] })] },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: x → y → z → x',
    },
    {
      name: '2-cycle',
      spec: { steps: [step('a', { dependsOn: ['b'] }), step('b', { dependsOn: ['a'] })] },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: a → b → a',
    },
    {
      name: 'cycle not involving the first step',
      spec: {
        steps: [step('start'), step('p', { dependsOn: ['start', 'r'] }), step('q', { dependsOn: ['p'] }), step('r', { dependsOn: ['q'] })],
      },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: p → q → r → p',
    },
    {
      name: 'input from a step that is not upstream',
      spec: {
        steps: [
          step('a', { outputs: [{ name: 'out', type: 'file' }] }),
          step('b', { inputs: [{ name: 'in', from: { step: 'a', output: 'out' } }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads from step "a", which is not upstream of it (add it to dependsOn)',
    },
    {
      name: 'input from a downstream step',
      spec: {
        steps: [
          step('a', { inputs: [{ name: 'in', from: { step: 'b', output: 'out' } }] }),
          step('b', { dependsOn: ['a'], outputs: [{ name: 'out', type: 'file' }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: /step "a" input "in" reads from step "b", which is not upstream/,
    },
    {
      name: 'input from an unknown step',
      spec: { steps: [step('a'), step('b', { dependsOn: ['a'], inputs: [{ name: 'in', from: { step: 'nope', output: 'out' } }] })] },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads from unknown step "nope"',
    },
    {
      name: 'input naming an undeclared output',
      spec: {
        steps: [
          step('a', { outputs: [{ name: 'model', type: 'model' }] }),
          step('b', { dependsOn: ['a'], inputs: [{ name: 'in', from: { step: 'a', output: 'metrics' } }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads output "metrics", which step "a" does not declare',
    },
    {
      name: 'step parameter not declared',
      spec: { parameters: [{ name: 'lr', type: 'float' }], steps: [step('a', { parameters: ['lr', 'epochs'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "epochs", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in args',
      spec: { steps: [step('a', { args: ['--lr=$(params.lr)'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "lr", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in command',
      spec: { parameters: [{ name: 'lr', type: 'float' }], steps: [step('a', { command: ['train', '$(params.lr)', '$(params.batch-size)'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "batch-size", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in env',
      spec: { steps: [step('a'), step('b', { env: [{ name: 'SEED', value: 'seed=$(params.seed)' }] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "b" uses parameter "seed", which the pipeline does not declare',
    },
    {
      name: 'int default that is not an integer',
      spec: { parameters: [{ name: 'epochs', type: 'int', default: '3.5' }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: 'parameter "epochs": default "3.5" is not an integer',
    },
    {
      name: 'bool default that is not a boolean',
      spec: { parameters: [{ name: 'shuffle', type: 'bool', default: 'yes' }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: /parameter "shuffle": default "yes" is not a boolean/,
    },
    {
      name: 'string default that is a number',
      spec: { parameters: [{ name: 'tag', type: 'string', default: 3 }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: /parameter "tag": default 3 is not a string/,
    },
  ];
  for (const c of cases) {
    it(`rejects ${c.name} (${c.reason})`, () => {
      const problem = validatePipeline(c.spec);
      assert.ok(problem, 'expected a problem');
      assert.equal(problem.reason, c.reason);
      if (typeof c.message === 'string') assert.equal(problem.message, c.message);
      else assert.match(problem.message, c.message);
    });
  }
});

describe('referencedParameters', () => {
  it('collects $(params.x) from command, args and env values, once each', () => {
    const refs = referencedParameters(
      step('a', {
        command: ['$(params.a)'],
        args: ['--x=$(params.b)', '$(params.a)-$(params.c_d)', '$(other.x)', '$(params.)'],
        env: [{ name: 'E', value: '$(params.e-f)' }, { name: 'S', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }],
      }),
    );
    assert.deepEqual(refs.sort(), ['a', 'b', 'c_d', 'e-f']);
  });
});
