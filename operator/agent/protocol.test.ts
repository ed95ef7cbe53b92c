import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_METRICS, numericMetrics, parseTerminationMessage, type StepReport, type TerminationMessage } from './protocol.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const REPORT: StepReport = {
  outputs: [{ name: 'model', uri: `file:///store/ml/blobs/${DIGEST}`, digest: DIGEST, size: 1234 }],
  metrics: { accuracy: 0.95 },
};

describe('parseTerminationMessage', () => {
  // [name, text, parsed]
  const cases: Array<[string, string | undefined, TerminationMessage | undefined]> = [
    ['a report', JSON.stringify({ v: 1, report: REPORT }), { v: 1, report: REPORT }],
    ['a report without outputs published', JSON.stringify({ v: 1, report: { outputs: [] } }), { v: 1, report: { outputs: [] } }],
    [
      'a manifest',
      JSON.stringify({ v: 1, manifest: { uri: 'file:///store/ml/manifests/m.json', digest: DIGEST } }),
      { v: 1, manifest: { uri: 'file:///store/ml/manifests/m.json', digest: DIGEST } },
    ],
    ['a report and a manifest: the report wins', JSON.stringify({ v: 1, report: REPORT, manifest: { uri: 'u', digest: DIGEST } }), { v: 1, report: REPORT }],
    ['undefined', undefined, undefined],
    ['empty', '', undefined],
    ['garbage', 'Traceback (most recent call last): ...', undefined],
    ['truncated JSON', JSON.stringify({ v: 1, report: REPORT }).slice(0, 40), undefined],
    ['JSON null', 'null', undefined],
    ['a JSON number', '42', undefined],
    ['a JSON string', '"done"', undefined],
    ['a JSON array', '[1,2]', undefined],
    ['wrong version 2', JSON.stringify({ v: 2, report: REPORT }), undefined],
    ['version as a string', JSON.stringify({ v: '1', report: REPORT }), undefined],
    ['no version', JSON.stringify({ report: REPORT }), undefined],
    ['version only', JSON.stringify({ v: 1 }), undefined],
    ['a report without an outputs list', JSON.stringify({ v: 1, report: { metrics: { a: 1 } } }), undefined],
    ['a report whose outputs is not a list', JSON.stringify({ v: 1, report: { outputs: 'model' } }), undefined],
    ['a manifest without a URI', JSON.stringify({ v: 1, manifest: { digest: DIGEST } }), undefined],
    ['a manifest whose URI is not a string', JSON.stringify({ v: 1, manifest: { uri: 7, digest: DIGEST } }), undefined],
  ];
  for (const [name, text, expected] of cases) {
    it(name, () => assert.deepEqual(parseTerminationMessage(text), expected));
  }

  it('drops members other than the report', () => {
    assert.deepEqual(parseTerminationMessage(JSON.stringify({ v: 1, report: REPORT, extra: 'x' })), { v: 1, report: REPORT });
  });
});

describe('numericMetrics', () => {
  // [name, document, metrics]
  const cases: Array<[string, unknown, Record<string, number>]> = [
    ['keeps numbers', { accuracy: 0.95, loss: 0.1, epochs: 3, zero: 0, negative: -1.5 }, { accuracy: 0.95, epochs: 3, loss: 0.1, negative: -1.5, zero: 0 }],
    [
      'drops non-numbers',
      { accuracy: 0.95, name: 'run', numeric: '0.5', flag: true, nothing: null, list: [1], nested: { a: 1 } },
      { accuracy: 0.95 },
    ],
    ['drops NaN and infinities', { ok: 1, nan: NaN, inf: Infinity, ninf: -Infinity }, { ok: 1 }],
    ['an empty object', {}, {}],
    ['null', null, {}],
    ['undefined', undefined, {}],
    ['a number', 3, {}],
    ['a string', '{"a":1}', {}],
    ['an array', [1, 2, 3], {}],
  ];
  for (const [name, document, expected] of cases) {
    it(name, () => assert.deepEqual(numericMetrics(document), expected));
  }

  it('sorts by name', () => {
    assert.deepEqual(Object.keys(numericMetrics({ zeta: 1, alpha: 2, Beta: 3, mid: 4, _x: 5 })), ['Beta', '_x', 'alpha', 'mid', 'zeta']);
  });

  it(`keeps at most ${MAX_METRICS} metrics, the first by name`, () => {
    assert.equal(MAX_METRICS, 64);
    const names = Array.from({ length: 100 }, (_, i) => `m${String(i).padStart(3, '0')}`);
    const document = Object.fromEntries([...names].reverse().map((n, i) => [n, i]));
    const metrics = numericMetrics(document);
    assert.deepEqual(Object.keys(metrics), names.slice(0, 64));
    assert.equal(metrics.m000, 99);
  });

  it('counts only numeric metrics against the cap', () => {
    const numbers = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`b${String(i).padStart(2, '0')}`, i]));
    const metrics = numericMetrics({ a0: 'text', a1: NaN, ...numbers });
    assert.equal(Object.keys(metrics).length, 64);
    assert.equal(metrics.b63, 63);
  });

  it('parses what JSON.parse gives for a metrics.json file', () => {
    assert.deepEqual(numericMetrics(JSON.parse('{"accuracy": 0.9, "f1": 1e-3, "big": 1e308, "note": "ok"}')), { accuracy: 0.9, big: 1e308, f1: 0.001 });
  });
});
