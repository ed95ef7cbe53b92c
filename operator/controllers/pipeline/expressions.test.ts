import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkCondition,
  evaluateCondition,
  referencedSteps,
  type ConditionValues,
  type DeclaredValue,
  type ExpressionEnvironment,
  type ValueType,
} from './expressions.ts';

const t = (type: ValueType, list = false): DeclaredValue => (list ? { type, list } : { type });

const env: ExpressionEnvironment = {
  params: new Map([
    ['epochs', t('int')],
    ['name', t('string')],
    ['learning-rate', t('float')],
    ['dry-run', t('bool')],
    ['config', t('json')],
  ]),
  results: new Map([
    ['flip', new Map([['side', t('string')]])],
    ['train', new Map([['accuracy', t('float')], ['converged', t('bool')]])],
    ['sweep', new Map([['acc', t('float', true)]])],
  ]),
};

type Value = { type: ValueType; value: string } | { type: ValueType; list: string[] };
const v = (type: ValueType, value: string): Value => ({ type, value });
const list = (type: ValueType, ...items: string[]): Value => ({ type, list: items });

const values: ConditionValues = {
  params: new Map([
    ['epochs', { type: 'int', value: '5' }],
    ['name', { type: 'string', value: 'bert' }],
    ['learning-rate', { type: 'float', value: '0.01' }],
    ['dry-run', { type: 'bool', value: 'false' }],
    ['config', { type: 'json', value: '{"replicas": 3, "tags": ["gpu", "spot"], "nested": {"on": true}}' }],
  ]),
  results: new Map([
    ['flip', new Map([['side', v('string', 'heads')]])],
    ['train', new Map([['accuracy', v('float', '0.93')], ['converged', v('bool', 'true')]])],
    ['sweep', new Map([['acc', list('float', '0.5', '0.95', '0.7')]])],
  ]),
};

/** The same values with one result replaced. */
const withResult = (step: string, name: string, value: Value): ConditionValues => {
  const results = new Map([...values.results].map(([s, r]) => [s, new Map(r)]));
  results.get(step)!.set(name, value);
  return { params: values.params, results };
};

describe('evaluateCondition', () => {
  const cases: Array<{ expression: string; value: boolean; values?: ConditionValues }> = [
    { expression: 'steps.flip.results.side == "heads"', value: true },
    {
      expression: 'steps.flip.results.side == "heads"',
      value: false,
      values: withResult('flip', 'side', v('string', 'tails')),
    },
    { expression: 'params.epochs > 3', value: true },
    { expression: 'params.epochs > 5', value: false },
    { expression: 'params.epochs == 5 && params.epochs > 4.5', value: true },
    { expression: 'steps.train.results.accuracy >= 0.9', value: true },
    {
      expression: 'steps.train.results.accuracy >= 0.9',
      value: false,
      values: withResult('train', 'accuracy', v('float', '0.89')),
    },
    { expression: 'steps.train.results.converged', value: true },
    { expression: '!params["dry-run"] && steps.train.results.converged', value: true },
    { expression: 'params["learning-rate"] < 0.1', value: true },
    { expression: 'size(steps.sweep.results.acc) == 3', value: true },
    { expression: 'steps.sweep.results.acc.exists(a, a > 0.9)', value: true },
    { expression: 'steps.sweep.results.acc.all(a, a > 0.9)', value: false },
    { expression: 'steps.sweep.results.acc[1] == 0.95', value: true },
    // json: numbers are doubles, which CEL compares with ints; objects are maps.
    { expression: 'params.config.replicas == 3', value: true },
    { expression: '"spot" in params.config.tags && params.config.nested.on == true', value: true },
    { expression: 'params.name.startsWith("be") && size(params.name) == 4', value: true },
    // A comprehension variable shadows the global it is named after.
    { expression: '[1, 2].exists(params, params == 2)', value: true },
    { expression: 'cel.bind(best, steps.train.results.accuracy, best > 0.9 && best < 1.0)', value: true },
    { expression: 'params.epochs > 1 &&\n  steps.flip.results.side != "tails"', value: true },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.expression)} is ${c.value}`, () => {
      assert.equal('ok' in checkCondition(c.expression, env), true);
      assert.deepEqual(evaluateCondition(c.expression, env, c.values ?? values), { value: c.value });
    });
  }

  it('gives the same answer from the cache on a second pass', () => {
    const expression = 'steps.train.results.accuracy >= 0.9';
    assert.deepEqual(evaluateCondition(expression, env, values), { value: true });
    const lower = withResult('train', 'accuracy', v('float', '0.1'));
    assert.deepEqual(evaluateCondition(expression, env, lower), { value: false });
  });
});

describe('checkCondition', () => {
  it('returns the exact parameters and results a condition reads, sorted and without repeats', () => {
    assert.deepEqual(
      checkCondition(
        'params.epochs > 3 && params["learning-rate"] < 0.1 && steps.train.results.accuracy > 0.5 && ' +
          'steps.flip.results.side == "heads" && params.epochs < 10 && [1].exists(x, x == 1)',
        env,
      ),
      {
        ok: true,
        references: {
          params: ['epochs', 'learning-rate'],
          results: [
            { step: 'flip', name: 'side' },
            { step: 'train', name: 'accuracy' },
          ],
        },
      },
    );
  });

  it('does not count a shadowed name as a reference', () => {
    assert.deepEqual(checkCondition('[1].exists(params, params > 0)', env), {
      ok: true,
      references: { params: [], results: [] },
    });
  });

  const errors: Array<{ name: string; expression: string; error: string; env?: ExpressionEnvironment }> = [
    {
      name: 'a syntax error, with its position',
      expression: 'params.epochs >',
      error: 'syntax error at column 16: Unexpected token: EOF',
    },
    {
      name: 'a syntax error on a later line',
      expression: 'params.epochs > 1 &&\n  params.name ==',
      error: 'syntax error at line 2, column 17: Unexpected token: EOF',
    },
    {
      name: 'an unknown parameter',
      expression: 'params.batch > 3',
      error: 'unknown parameter "batch" at column 1 (declared: config, dry-run, epochs, learning-rate, name)',
    },
    {
      name: 'an unknown parameter through map access',
      expression: 'true && params["batch-size"] > 3',
      error: 'unknown parameter "batch-size" at column 9 (declared: config, dry-run, epochs, learning-rate, name)',
    },
    {
      name: 'an unknown (or not upstream) step',
      expression: 'steps.deploy.results.url != ""',
      error: 'unknown step "deploy" at column 1: only upstream steps can be read (upstream: flip, sweep, train)',
    },
    {
      name: 'an unknown result',
      expression: 'steps.flip.results.edge == "x"',
      error: 'unknown result "edge" of step "flip" at column 1 (declared: side)',
    },
    {
      name: 'an unknown variable',
      expression: 'epochs > 3',
      error:
        'unknown variable "epochs" at column 1: a condition reads only params.<name> and steps.<step>.results.<name>',
    },
    {
      name: 'a condition that is not a bool',
      expression: 'params.epochs + 1',
      error: 'the condition must be a bool, but its type is int',
    },
    {
      name: 'a string compared with an int',
      expression: 'params.name > 3',
      error: 'type mismatch at column 1: no such overload: string > int',
    },
    {
      name: 'int and double arithmetic (CEL does not convert implicitly)',
      expression: 'params.epochs * 0.5 > 1.0',
      error: 'type mismatch at column 1: no such overload: int * double',
    },
    {
      name: 'a list where a scalar is expected',
      expression: 'steps.sweep.results.acc > 0.9',
      error: 'type mismatch at column 1: no such overload: list<double> > double',
    },
    {
      name: 'params on its own',
      expression: '"epochs" in params',
      error: 'params used on its own at column 13: write params.<name>',
    },
    {
      name: 'a computed parameter name',
      expression: 'params[params.name] == 1',
      error: 'a computed parameter name at column 1: write params.<name> or params["<name>"]',
    },
    {
      name: 'a step without .results',
      expression: 'steps.flip.side == "heads"',
      error: 'steps.flip without .results.<name> at column 1: write steps.flip.results.<name>',
    },
    {
      name: 'matches(), which would run an unbounded JavaScript regular expression',
      expression: 'params.name.matches("(a+)+$")',
      error:
        'matches() at column 1: regular expressions are not available in conditions; use contains, startsWith or endsWith',
    },
    {
      name: 'comprehensions nested three deep',
      expression: 'steps.sweep.results.acc.exists(a, [1].exists(b, [2].all(c, c > 1)))',
      error:
        'all() nested 3 deep at column 49: at most 2 levels of all/exists/exists_one/map/filter are allowed',
    },
    {
      name: 'an expression nested past the parse limits',
      expression: `params.config${'.a'.repeat(40)} == 1`,
      error: 'the condition is too complex at column 74: Exceeded maxDepth (32)',
    },
    {
      name: 'an expression over the length limit',
      expression: `params.epochs > 1${' && true'.repeat(300)}`,
      error: 'the condition is 2417 characters long; at most 2048 are allowed',
    },
    {
      name: 'no parameters declared',
      expression: 'params.epochs > 1',
      env: { params: new Map(), results: new Map() },
      error: 'unknown parameter "epochs" at column 1 (none are declared)',
    },
  ];
  for (const c of errors) {
    it(`refuses ${c.name}`, () => {
      assert.deepEqual(checkCondition(c.expression, c.env ?? env), { error: c.error });
      // Evaluation reports the same error instead of throwing.
      assert.deepEqual(evaluateCondition(c.expression, c.env ?? env, values), { error: c.error });
    });
  }
});

describe('evaluateCondition errors', () => {
  const cases: Array<{ name: string; expression: string; values?: ConditionValues; error: string }> = [
    {
      name: 'division by zero',
      expression: 'params.epochs / (params.epochs - 5) > 1',
      error: 'evaluation failed at column 1: division by zero',
    },
    {
      name: 'a missing key in a json value',
      expression: 'params.config.gpus > 0',
      error: 'evaluation failed at column 15: No such key: gpus',
    },
    {
      name: 'a list index out of range',
      expression: 'steps.sweep.results.acc[3] > 0.5',
      error: 'evaluation failed at column 1: No such key: index out of bounds, index 3 >= size 3',
    },
    {
      name: 'a json field that is not a bool',
      expression: 'params.config.replicas',
      error: 'the condition evaluated to a double (3), not a bool',
    },
    {
      name: 'a result that was not produced',
      expression: 'steps.flip.results.side == "heads"',
      values: { params: values.params, results: new Map() },
      error: 'no value for result "side" of step "flip"',
    },
    {
      name: 'a value that does not parse as its type',
      expression: 'steps.train.results.accuracy > 0.5',
      values: withResult('train', 'accuracy', v('float', 'high')),
      error: 'result "accuracy" of step "train" has value "high", which is not a float',
    },
    {
      name: 'a list item that does not parse as its type',
      expression: 'size(steps.sweep.results.acc) == 2',
      values: withResult('sweep', 'acc', list('float', '0.5', '')),
      error: 'result "acc" of step "sweep" (item 1) has value "", which is not a float',
    },
    {
      name: 'a single value for a fan-out result',
      expression: 'size(steps.sweep.results.acc) == 1',
      values: withResult('sweep', 'acc', v('float', '0.5')),
      error: 'result "acc" of step "sweep" is a list (its step fans out) but arrived as a single value',
    },
    {
      name: 'a value typed differently from its declaration',
      expression: 'steps.train.results.accuracy > 0.5',
      values: withResult('train', 'accuracy', v('int', '1')),
      error: 'result "accuracy" of step "train" is declared as float but its value is typed int',
    },
  ];
  for (const c of cases) {
    it(`reports ${c.name}`, () => {
      assert.equal('ok' in checkCondition(c.expression, env), true);
      assert.deepEqual(evaluateCondition(c.expression, env, c.values ?? values), { error: c.error });
    });
  }

  it('ignores malformed values the condition does not read', () => {
    const broken = withResult('train', 'accuracy', v('float', 'high'));
    assert.deepEqual(evaluateCondition('params.epochs == 5', env, broken), { value: true });
  });

  it('refuses a fourth cel.bind(), which could double a value again', () => {
    const expression = 'cel.bind(a, [1], cel.bind(b, a + a, cel.bind(c, b + b, cel.bind(d, c + c, size(d) == 16))))';
    assert.deepEqual(checkCondition(expression, env), { error: 'cel.bind() number 4 at column 56: at most 3 are allowed' });
  });

  it('keeps answering correctly once the program cache has evicted entries', () => {
    for (let i = 0; i < 1100; i++) {
      assert.deepEqual(evaluateCondition(`params.epochs == ${i}`, env, values), { value: i === 5 });
    }
    assert.deepEqual(evaluateCondition('params.epochs == 5', env, values), { value: true });
  });

  it('converts int values to 64-bit CEL ints', () => {
    const big = { params: new Map([['epochs', { type: 'int' as const, value: '9223372036854775807' }]]), results: new Map() };
    assert.deepEqual(evaluateCondition('params.epochs == 9223372036854775807', env, big), { value: true });
    const tooBig = { params: new Map([['epochs', { type: 'int' as const, value: '9223372036854775808' }]]), results: new Map() };
    assert.deepEqual(evaluateCondition('params.epochs > 0', env, tooBig), {
      error: 'parameter "epochs" has value "9223372036854775808", which is not a 64-bit int',
    });
  });
});

describe('referencedSteps', () => {
  const cases: Array<{ expression: string; steps: string[] }> = [
    { expression: 'steps.flip.results.side == "heads"', steps: ['flip'] },
    { expression: 'steps["train-big"].results.acc > steps.train.results.acc || steps.flip.results.x', steps: ['flip', 'train', 'train-big'] },
    // Invalid conditions still name their steps, so dependency checks can speak of them.
    { expression: 'steps.deploy.results.url + 1', steps: ['deploy'] },
    { expression: 'steps.deploy', steps: ['deploy'] },
    { expression: 'params.epochs > 3', steps: [] },
    { expression: '[1].exists(steps, steps.ghost == 1)', steps: [] },
    { expression: 'steps.flip.results.side ==', steps: [] },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.expression)} → [${c.steps.join(', ')}]`, () => {
      assert.deepEqual(referencedSteps(c.expression), c.steps);
    });
  }
});
