import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec } from '../../agent/protocol.ts';
import { cacheKeyOf, isCacheable, maxAgeMs, type CacheKey } from './cache-key.ts';

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;

/** A step that uses parameter `lr` (declared) and `epochs` (referenced in args), not `seed`. */
const base = (): StepSpec => ({
  name: 'train',
  image: 'registry.local/train@sha256:' + '1'.repeat(64),
  command: ['python', 'train.py'],
  args: ['--epochs', '$(params.epochs)'],
  env: [{ name: 'MODE', value: 'full' }],
  parameters: ['lr'],
  inputs: [{ name: 'data', from: { step: 'prepare', output: 'dataset' } }],
  outputs: [{ name: 'model', type: 'model' }, { name: 'report', type: 'metrics' }],
  cache: { policy: 'Enabled', version: '1' },
});
const baseParameters = (): Map<string, string> => new Map([['lr', '0.1'], ['epochs', '3'], ['seed', '42']]);
const baseInputs = (): InputSpec[] => [{ name: 'data', uri: 'file:///store/ml/data.tar', digest: DIGEST_A }];

const keyOf = (
  change: { step?: (s: StepSpec) => StepSpec; parameters?: (p: Map<string, string>) => Map<string, string>; inputs?: (i: InputSpec[]) => InputSpec[] } = {},
): CacheKey => {
  const step = (change.step ?? ((s) => s))(base());
  const parameters = (change.parameters ?? ((p) => p))(baseParameters());
  const inputs = (change.inputs ?? ((i) => i))(baseInputs());
  return cacheKeyOf(step, parameters, inputs);
};

/** Names of the components whose hashes differ between two keys. */
const differing = (a: CacheKey, b: CacheKey): string[] => {
  const names = [...new Set([...Object.keys(a.components), ...Object.keys(b.components)])].sort();
  return names.filter((n) => a.components[n] !== b.components[n]);
};

describe('cacheKeyOf', () => {
  it('is a sha256 digest with one 16-hex-digit hash per component', () => {
    const key = keyOf();
    assert.match(key.key, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(key.components).sort(), ['args', 'command', 'env', 'image', 'inputs', 'outputs', 'parameters', 'version']);
    for (const [name, hash] of Object.entries(key.components)) assert.match(hash, /^[0-9a-f]{16}$/, name);
  });

  it('is stable across calls', () => {
    assert.deepEqual(keyOf(), keyOf());
  });

  it('does not depend on object key order, parameter map order or input order', () => {
    const reordered: StepSpec = {
      cache: { version: '1', policy: 'Enabled' },
      outputs: [{ type: 'model', name: 'model' }, { type: 'metrics', name: 'report' }],
      inputs: [{ from: { output: 'dataset', step: 'prepare' }, name: 'data' }],
      parameters: ['lr'],
      env: [{ value: 'full', name: 'MODE' }],
      args: ['--epochs', '$(params.epochs)'],
      command: ['python', 'train.py'],
      image: base().image,
      name: 'train',
    };
    const parameters = new Map([['seed', '42'], ['epochs', '3'], ['lr', '0.1']]);
    assert.deepEqual(cacheKeyOf(reordered, parameters, baseInputs()), keyOf());

    const twoInputs: InputSpec[] = [
      { name: 'data', uri: 'file:///d', digest: DIGEST_A },
      { name: 'labels', uri: 'file:///l', digest: DIGEST_B },
    ];
    assert.deepEqual(
      cacheKeyOf(base(), baseParameters(), twoInputs),
      cacheKeyOf(base(), baseParameters(), [...twoInputs].reverse()),
    );
  });

  // [what changed, change, the only component expected to differ]
  const changes: Array<[string, Parameters<typeof keyOf>[0], string]> = [
    ['image', { step: (s) => ({ ...s, image: 'registry.local/train@sha256:' + '2'.repeat(64) }) }, 'image'],
    ['command', { step: (s) => ({ ...s, command: ['python', 'train2.py'] }) }, 'command'],
    ['command removed', { step: ({ command: _, ...s }) => s }, 'command'],
    ['args', { step: (s) => ({ ...s, args: ['--epochs', '$(params.epochs)', '--fast'] }) }, 'args'],
    ['env value', { step: (s) => ({ ...s, env: [{ name: 'MODE', value: 'quick' }] }) }, 'env'],
    ['env added', { step: (s) => ({ ...s, env: [...(s.env ?? []), { name: 'EXTRA', value: '1' }] }) }, 'env'],
    ['a declared parameter\'s value', { parameters: (p) => new Map(p).set('lr', '0.2') }, 'parameters'],
    ['a referenced parameter\'s value', { parameters: (p) => new Map(p).set('epochs', '4') }, 'parameters'],
    ['an input digest', { inputs: (i) => i.map((x) => ({ ...x, digest: DIGEST_B })) }, 'inputs'],
    ['an output name', { step: (s) => ({ ...s, outputs: [{ name: 'weights', type: 'model' }, { name: 'report', type: 'metrics' }] }) }, 'outputs'],
    ['an output type', { step: (s) => ({ ...s, outputs: [{ name: 'model', type: 'file' }, { name: 'report', type: 'metrics' }] }) }, 'outputs'],
    ['cache.version', { step: (s) => ({ ...s, cache: { policy: 'Enabled', version: '2' } }) }, 'version'],
    ['cache.version removed', { step: (s) => ({ ...s, cache: { policy: 'Enabled' } }) }, 'version'],
  ];
  for (const [what, change, component] of changes) {
    it(`changes with ${what}, naming only "${component}"`, () => {
      const before = keyOf();
      const after = keyOf(change);
      assert.notEqual(after.key, before.key);
      assert.deepEqual(differing(before, after), [component]);
    });
  }

  const nonChanges: Array<[string, Parameters<typeof keyOf>[0]]> = [
    ['an unused parameter\'s value', { parameters: (p) => new Map(p).set('seed', '7') }],
    ['an unused parameter added', { parameters: (p) => new Map(p).set('other', 'x') }],
    ['an input URI (same digest)', { inputs: (i) => i.map((x) => ({ ...x, uri: 'gs://bucket/elsewhere.tar' })) }],
    ['the step name', { step: (s) => ({ ...s, name: 'train-again' }) }],
    ['dependsOn', { step: (s) => ({ ...s, dependsOn: ['prepare'] }) }],
    ['retries and timeout', { step: (s) => ({ ...s, retries: { limit: 3 }, timeoutSeconds: 60 }) }],
    ['cache.maxAge', { step: (s) => ({ ...s, cache: { policy: 'Enabled', version: '1', maxAge: '1d' } }) }],
  ];
  for (const [what, change] of nonChanges) {
    it(`does not change with ${what}`, () => {
      assert.deepEqual(keyOf(change), keyOf());
    });
  }

  it('treats a used parameter without a value as a value of its own', () => {
    const missing = keyOf({ parameters: (p) => { const m = new Map(p); m.delete('lr'); return m; } });
    assert.deepEqual(differing(keyOf(), missing), ['parameters']);
    assert.deepEqual(differing(keyOf({ parameters: (p) => new Map(p).set('lr', '') }), missing), ['parameters']);
  });

  it('names every changed component when several change', () => {
    const after = keyOf({
      step: (s) => ({ ...s, image: 'other', cache: { policy: 'Enabled', version: '9' } }),
      inputs: (i) => i.map((x) => ({ ...x, digest: DIGEST_B })),
    });
    assert.deepEqual(differing(keyOf(), after), ['image', 'inputs', 'version']);
  });

  it('gives a minimal step (no command, args, env, inputs, outputs, cache) a key', () => {
    const minimal = cacheKeyOf({ name: 's', image: 'img' }, new Map(), []);
    assert.match(minimal.key, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(minimal, cacheKeyOf({ name: 's', image: 'img', command: [], args: [], env: [], outputs: [] }, new Map(), []));
  });
});

describe('isCacheable', () => {
  // [step cache policy, run cachePolicy, cacheable]
  const cases: Array<[StepSpec['cache'], 'Enabled' | 'Disabled' | undefined, boolean]> = [
    [undefined, undefined, true],
    [undefined, 'Enabled', true],
    [undefined, 'Disabled', false],
    [{ policy: 'Enabled' }, undefined, true],
    [{ policy: 'Enabled' }, 'Enabled', true],
    [{ policy: 'Enabled' }, 'Disabled', false],
    [{ policy: 'Disabled' }, undefined, false],
    [{ policy: 'Disabled' }, 'Enabled', false],
    [{ policy: 'Disabled' }, 'Disabled', false],
  ];
  for (const [cache, runPolicy, expected] of cases) {
    it(`step ${cache?.policy ?? '(unset)'}, run ${runPolicy ?? '(unset)'} → ${expected}`, () => {
      assert.equal(isCacheable({ name: 's', image: 'img', ...(cache ? { cache } : {}) }, runPolicy), expected);
    });
  }
});

describe('maxAgeMs', () => {
  const cases: Array<[string | undefined, number]> = [
    ['7d', 7 * 86_400_000],
    ['1h30m', 90 * 60_000],
    ['45s', 45_000],
    ['12h', 12 * 3_600_000],
    ['1d2h3m4s', 86_400_000 + 2 * 3_600_000 + 3 * 60_000 + 4_000],
    ['0s', 0],
    [undefined, Infinity],
  ];
  for (const [maxAge, expected] of cases) {
    it(`${maxAge ?? 'undefined'} → ${expected}`, () => {
      const step: StepSpec = { name: 's', image: 'img', ...(maxAge !== undefined ? { cache: { policy: 'Enabled', maxAge } } : {}) };
      assert.equal(maxAgeMs(step), expected);
    });
  }

  it('is Infinity for a cache block without maxAge', () => {
    assert.equal(maxAgeMs({ name: 's', image: 'img', cache: { policy: 'Enabled' } }), Infinity);
  });
});
