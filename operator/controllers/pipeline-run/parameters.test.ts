import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ParameterSpec, ParameterType } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter, escapeForKubelet, parameterEnvName, resolveParameters, substituteParameters } from './parameters.ts';

describe('coerceParameter', () => {
  // [type, raw, canonical value or undefined when rejected, error text when rejected]
  const cases: Array<[ParameterType, unknown, string | undefined, RegExp?]> = [
    ['int', '3', '3'],
    ['int', 3, '3'],
    ['int', -2, '-2'],
    ['int', ' 42 ', '42'],
    ['int', '007', '7'],
    ['int', '3.5', undefined, /^"3\.5" is not an integer$/],
    ['int', 3.5, undefined, /^3\.5 is not an integer$/],
    ['int', 'x', undefined, /^"x" is not an integer$/],
    ['int', '', undefined, /is not an integer/],
    ['int', true, undefined, /^true is not an integer$/],
    ['int', '99999999999999999999', undefined, /is not an integer/],
    ['int', 1e21, undefined, /is not an integer/],
    ['float', '0.25', '0.25'],
    ['float', 1, '1'],
    ['float', 0.5, '0.5'],
    ['float', '-1e-3', '-0.001'],
    ['float', '1e3', '1000'],
    ['float', 'abc', undefined, /^"abc" is not a number$/],
    ['float', '', undefined, /^"" is not a number$/],
    ['float', '  ', undefined, /is not a number/],
    ['float', 'Infinity', undefined, /is not a number/],
    ['float', false, undefined, /^false is not a number$/],
    ['bool', true, 'true'],
    ['bool', false, 'false'],
    ['bool', 'true', 'true'],
    ['bool', 'false', 'false'],
    ['bool', 'yes', undefined, /^"yes" is not a boolean \(true or false\)$/],
    ['bool', 1, undefined, /^1 is not a boolean/],
    ['bool', 'True', undefined, /is not a boolean/],
    ['string', 'a', 'a'],
    ['string', '', ''],
    ['string', '3', '3'],
    ['string', 3, undefined, /^3 is not a string \(quote it\)$/],
    ['string', true, undefined, /^true is not a string/],
  ];
  for (const [type, raw, value, error] of cases) {
    const shown = typeof raw === 'string' ? JSON.stringify(raw) : String(raw);
    it(`${type} ${shown} → ${value === undefined ? 'error' : JSON.stringify(value)}`, () => {
      const coerced = coerceParameter(type, raw);
      if (value !== undefined) assert.deepEqual(coerced, { value });
      else {
        assert.ok('error' in coerced, `expected an error, got ${JSON.stringify(coerced)}`);
        assert.match(coerced.error, error!);
      }
    });
  }
});

describe('resolveParameters', () => {
  const declared: ParameterSpec[] = [
    { name: 'lr', type: 'float', default: 0.01 },
    { name: 'epochs', type: 'int', default: '3' },
    { name: 'dataset', type: 'string' },
    { name: 'shuffle', type: 'bool', default: false },
  ];

  it('uses defaults, lets run values override, and records the source', () => {
    const resolution = resolveParameters(declared, [
      { name: 'dataset', value: 'gs://bucket/data' },
      { name: 'epochs', value: 10 },
    ]);
    assert.deepEqual(resolution, {
      parameters: [
        { name: 'lr', value: '0.01', source: 'default' },
        { name: 'epochs', value: '10', source: 'run' },
        { name: 'dataset', value: 'gs://bucket/data', source: 'run' },
        { name: 'shuffle', value: 'false', source: 'default' },
      ],
    });
  });

  it('resolves an empty declaration to nothing', () => {
    assert.deepEqual(resolveParameters([], []), { parameters: [] });
  });

  const errors: Array<[string, ParameterSpec[], Parameters<typeof resolveParameters>[1], string]> = [
    ['unknown parameter', [{ name: 'a', type: 'string', default: 'x' }], [{ name: 'b', value: 'y' }], 'unknown parameter "b"'],
    ['missing required parameter', [{ name: 'dataset', type: 'string' }], [], 'parameter "dataset" is required'],
    ['run value of the wrong type', [{ name: 'epochs', type: 'int' }], [{ name: 'epochs', value: 'ten' }], 'parameter "epochs" (int): "ten" is not an integer'],
    [
      'several problems, joined',
      declared,
      [{ name: 'epochs', value: 'x' }, { name: 'typo', value: 1 }],
      'unknown parameter "typo"; parameter "epochs" (int): "x" is not an integer; parameter "dataset" is required',
    ],
  ];
  for (const [name, decl, given, message] of errors) {
    it(`reports ${name}`, () => assert.deepEqual(resolveParameters(decl, given), { error: message }));
  }
});

describe('parameterEnvName', () => {
  const cases: Array<[string, string]> = [
    ['lr', 'FERRY_PARAM_LR'],
    ['batch-size', 'FERRY_PARAM_BATCH_SIZE'],
    ['learning_rate', 'FERRY_PARAM_LEARNING_RATE'],
    ['Mixed-Case-2', 'FERRY_PARAM_MIXED_CASE_2'],
  ];
  for (const [name, env] of cases) it(`${name} → ${env}`, () => assert.equal(parameterEnvName(name), env));
});

describe('substituteParameters', () => {
  const values = new Map([['lr', '0.01'], ['batch-size', '32'], ['empty', '']]);
  const cases: Array<[string, string]> = [
    ['--lr=$(params.lr)', '--lr=0.01'],
    ['$(params.lr)/$(params.batch-size)/$(params.lr)', '0.01/32/0.01'],
    ['x$(params.empty)y', 'xy'],
    ['$(params.unknown) stays', '$(params.unknown) stays'],
    ['$(inputs.lr) and $params.lr are not references', '$(inputs.lr) and $params.lr are not references'],
    ['no references', 'no references'],
  ];
  for (const [text, expected] of cases) it(`${text} → ${expected}`, () => assert.equal(substituteParameters(text, values), expected));
});

describe('substituteParameters: values are data for the kubelet', () => {
  it('escapes $( in a value so the kubelet does not expand another variable, and leaves written references alone', () => {
    const values = new Map([['name', 'x$(API_TOKEN)y'], ['plain', 'ok']]);
    assert.equal(substituteParameters('--name=$(params.name) $(FERRY_STEP) $(params.plain)', values), '--name=x$$(API_TOKEN)y $(FERRY_STEP) ok');
    assert.equal(escapeForKubelet('$($('), '$$($$(');
  });
});

describe('coerceParameter: what a status can hold', () => {
  it('refuses a value longer than the status holds, without repeating it, and an object value', () => {
    const huge = coerceParameter('string', 'x'.repeat(1024 * 1024));
    assert.deepEqual(huge, { error: "the value is 1048576 characters, more than the 4096 a run's status can hold" });
    assert.deepEqual(coerceParameter('string', 'y'.repeat(4096)), { value: 'y'.repeat(4096) });
    assert.deepEqual(coerceParameter('string', { a: 1 }), { error: 'the value is not a string, number or boolean' });
    const long = coerceParameter('int', `1${'0'.repeat(200)}x`);
    assert.ok('error' in long && long.error.length < 100, 'a long value is cut short in the message');
  });
});

describe('coerceParameter: json', () => {
  it('keeps canonical JSON text', () => assert.deepEqual(coerceParameter('json', '{ "b": 1, "a": [1.0, true] }'), { value: '{"a":[1,true],"b":1}' }));
  it('refuses text that is not JSON', () => assert.ok('error' in coerceParameter('json', '{a')));
  it('refuses a value whose canonical text is longer than status holds', () => {
    // A lone surrogate is one character in the text and six ("\\udc00") in canonical JSON.
    const raw = `"${'\udc00'.repeat(1000)}"`;
    assert.ok(raw.length <= 4096);
    const coerced = coerceParameter('json', raw);
    assert.ok('error' in coerced && /as canonical text, more than the 4096/.test(coerced.error), JSON.stringify(coerced));
  });
});
