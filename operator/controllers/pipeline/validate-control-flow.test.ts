// What the Pipeline validator says of control flow it cannot run: each problem is Ready=False
// with a reason and a message naming the step.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PipelineSpec, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { step } from '../../../test/builders.ts';
import { validatePipeline } from './validate.ts';

const spec = (steps: StepSpec[], extra: Partial<PipelineSpec> = {}): PipelineSpec => ({ steps, ...extra });

describe('validatePipeline: control flow', () => {
  const cases: Array<[string, PipelineSpec, string, RegExp]> = [
    ['a finally step that depends on a main step', spec([step('a')], { finally: [step('f', { dependsOn: ['a'] })] }), 'InvalidFinally', /finally step "f" depends on main step "a"/],
    ['a main step that depends on a finally step', spec([step('a', { dependsOn: ['f'] })], { finally: [step('f')] }), 'InvalidFinally', /step "a" depends on finally step "f"/],
    ['a finally step named like a main step', spec([step('a')], { finally: [step('a')] }), 'InvalidFinally', /has the name of a main step/],
    ['$(run.status) in a main step', spec([step('a', { args: ['$(run.status)'] })]), 'InvalidFinally', /step "a" uses \$\(run\.status\), which only finally steps can see/],
    ['$(item) without forEach', spec([step('a', { args: ['$(item.x)'] })]), 'InvalidForEach', /step "a" uses \$\(item\.x\) but has no forEach/],
    ['a result the producer does not declare', spec([step('a'), step('b', { dependsOn: ['a'], args: ['$(steps.a.results.x)'] })]), 'InvalidResultReference', /which step "a" does not declare/],
    ['a forEach over a parameter that is not json', spec([step('a', { forEach: { parameter: 'n' } })], { parameters: [{ name: 'n', type: 'int', default: 1 }] }), 'InvalidForEach', /must have type json/],
    ['a forEach over a json default that is not a list', spec([step('a', { forEach: { parameter: 'xs' } })], { parameters: [{ name: 'xs', type: 'json', default: '{"a":1}' }] }), 'InvalidForEach', /is not a JSON list/],
    ['a forEach with two sources', spec([step('a', { forEach: { items: [1], parameter: 'xs' } })], { parameters: [{ name: 'xs', type: 'json' }] }), 'InvalidForEach', /exactly one of items, parameter or result/],
    ['a forEach over a string result', spec([step('a', { results: [{ name: 'r', type: 'string' }] }), step('b', { dependsOn: ['a'], forEach: { result: { step: 'a', name: 'r' } } })]), 'InvalidForEach', /must have type json/],
    ['a forEach step that registers a model', spec([step('a', { forEach: { items: [1] }, outputs: [{ name: 'm', type: 'model', register: { name: 'iris' } }] })]), 'InvalidForEach', /cannot register models/],
    ['a step named like an item of a forEach step', spec([step('a', { forEach: { items: [1] } }), step('a-1')]), 'StepNameConflict', /step "a-1" could have the Pod name of an item of forEach step "a"/],
    ['a condition over a step that is not upstream', spec([step('a', { results: [{ name: 'r', type: 'int' }] }), step('b', { when: 'steps.a.results.r > 1' })]), 'InvalidCondition', /step "b": when "steps\.a\.results\.r > 1": unknown step "a"/],
    ['a condition that is not a bool', spec([step('a', { when: 'params.n + 1' })], { parameters: [{ name: 'n', type: 'int', default: 1 }] }), 'InvalidCondition', /must be a bool/],
  ];
  for (const [name, pipeline, reason, message] of cases) {
    it(`refuses ${name} (${reason})`, () => {
      const problem = validatePipeline(pipeline);
      assert.equal(problem?.reason, reason, JSON.stringify(problem));
      assert.match(problem!.message, message);
    });
  }

  it('accepts a sweep with its fan-in, a condition over its results and a finally step', () => {
    const problem = validatePipeline(spec([
      step('train', { forEach: { parameter: 'cs', maxParallelism: 2 }, args: ['$(item)'], results: [{ name: 'acc', type: 'float' }], outputs: [{ name: 'model', type: 'model' }] }),
      step('pick', { dependsOn: ['train'], inputs: [{ name: 'models', from: { step: 'train', output: 'model' } }], args: ['$(steps.train.results.acc)'], results: [{ name: 'best', type: 'float' }] }),
      step('register', { dependsOn: ['pick'], when: 'steps.pick.results.best >= params.threshold && size(steps.train.results.acc) > 0' }),
    ], {
      parameters: [{ name: 'cs', type: 'json', default: '[0.1, 1]' }, { name: 'threshold', type: 'float', default: 0.9 }],
      finally: [step('summary', { args: ['$(run.status)', '$(steps.pick.results.best)'] })],
    }));
    assert.equal(problem, undefined, JSON.stringify(problem));
  });
});
