import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION } from '../api/v1alpha1/common.ts';
import { modelVersionName, type ModelStage, type ModelVersion } from '../api/v1alpha1/model-version.ts';
import type { ModelReference } from '../api/v1alpha1/pipeline.ts';
import { describeReference, resolveModelReference, type ModelResolution } from './references.ts';

function version(model: string, n: number, stage: ModelStage, extra: { aliases?: string[]; deleted?: boolean } = {}): ModelVersion {
  return {
    apiVersion: API_VERSION,
    kind: 'ModelVersion',
    metadata: {
      name: modelVersionName(model, n),
      namespace: 'ml',
      ...(extra.deleted ? { deletionTimestamp: '2030-01-01T12:00:00Z' } : {}),
    },
    spec: {
      modelName: model,
      version: n,
      artifact: { uri: `file:///store/ml/${model}/${n}.tar`, digest: `sha256:${String(n).repeat(64).slice(0, 64)}` },
      stage,
      ...(extra.aliases ? { aliases: extra.aliases } : {}),
    },
  };
}

/** The name of the resolved version, or the error text. */
const outcome = (resolution: ModelResolution): string => ('version' in resolution ? resolution.version.metadata.name : `error: ${resolution.error}`);

const registry: ModelVersion[] = [
  version('iris', 1, 'Archived'),
  version('iris', 2, 'Production', { aliases: ['champion'] }),
  version('iris', 3, 'Staging', { aliases: ['challenger', 'latest'] }),
  version('iris', 4, 'None'),
  version('mnist', 1, 'Production', { aliases: ['champion'] }),
  version('mnist', 7, 'Staging'),
];

describe('resolveModelReference', () => {
  // [name, reference, versions, resolved name or error]
  const cases: Array<[string, ModelReference, ModelVersion[], string]> = [
    ['by stage Production', { name: 'iris', stage: 'Production' }, registry, 'iris-v2'],
    ['by stage Staging', { name: 'iris', stage: 'Staging' }, registry, 'iris-v3'],
    ['by version', { name: 'iris', version: 4 }, registry, 'iris-v4'],
    ['by version, of the other model', { name: 'mnist', version: 7 }, registry, 'mnist-v7'],
    ['by alias', { name: 'iris', alias: 'champion' }, registry, 'iris-v2'],
    ['by alias, one of several', { name: 'iris', alias: 'latest' }, registry, 'iris-v3'],
    ['by alias, of the other model', { name: 'mnist', alias: 'champion' }, registry, 'mnist-v1'],
    [
      'no version in the stage',
      { name: 'mnist', stage: 'Production' }, registry.filter((v) => v.metadata.name !== 'mnist-v1'),
      'error: model "mnist" in stage Production does not exist (registered: v7 (Staging))',
    ],
    [
      'no such version: lists the registered ones, sorted',
      { name: 'iris', version: 9 }, [...registry].reverse(),
      'error: model "iris" version 9 does not exist (registered: v1 (Archived), v2 (Production), v3 (Staging), v4 (None))',
    ],
    [
      'no such alias',
      { name: 'iris', alias: 'nobody' }, registry,
      'error: model "iris" with alias "nobody" does not exist (registered: v1 (Archived), v2 (Production), v3 (Staging), v4 (None))',
    ],
    [
      'no versions registered at all',
      { name: 'iris', stage: 'Production' }, [],
      'error: model "iris" in stage Production does not exist (no versions are registered)',
    ],
    [
      'only other models registered',
      { name: 'cifar', version: 1 }, registry,
      'error: model "cifar" version 1 does not exist (no versions are registered)',
    ],
    [
      'two in the same stage: the newest wins',
      { name: 'iris', stage: 'Production' }, [version('iris', 5, 'Production'), version('iris', 12, 'Production'), version('iris', 9, 'Production')],
      'iris-v12',
    ],
    [
      'two with the same alias: the newest wins',
      { name: 'iris', alias: 'champion' }, [version('iris', 3, 'None', { aliases: ['champion'] }), version('iris', 2, 'None', { aliases: ['champion'] })],
      'iris-v3',
    ],
    [
      'a deleted version in the stage is ignored',
      { name: 'iris', stage: 'Production' }, [version('iris', 2, 'Production'), version('iris', 3, 'Production', { deleted: true })],
      'iris-v2',
    ],
    [
      'a deleted version is not found by number',
      { name: 'iris', version: 3 }, [version('iris', 2, 'Production'), version('iris', 3, 'Staging', { deleted: true })],
      'error: model "iris" version 3 does not exist (registered: v2 (Production))',
    ],
    [
      'a deleted version is not found by alias',
      { name: 'iris', alias: 'champion' }, [version('iris', 3, 'Production', { aliases: ['champion'], deleted: true })],
      'error: model "iris" with alias "champion" does not exist (no versions are registered)',
    ],
    [
      "another model's version in the stage is ignored",
      { name: 'iris', stage: 'Staging' }, [version('mnist', 9, 'Staging'), version('iris', 1, 'Staging')],
      'iris-v1',
    ],
    [
      "another model's version with the number is ignored",
      { name: 'iris', version: 7 }, [version('mnist', 7, 'Staging'), version('iris', 1, 'Staging')],
      'error: model "iris" version 7 does not exist (registered: v1 (Staging))',
    ],
  ];
  for (const [name, ref, versions, expected] of cases) {
    it(name, () => assert.equal(outcome(resolveModelReference(ref, versions)), expected));
  }

  it('returns the ModelVersion object itself', () => {
    const resolution = resolveModelReference({ name: 'iris', version: 2 }, registry);
    assert.ok('version' in resolution);
    assert.equal(resolution.version, registry[1]);
  });

  it('does not reorder the caller\'s list', () => {
    const versions = [version('iris', 1, 'Production'), version('iris', 2, 'Production')];
    const before = versions.map((v) => v.metadata.name);
    resolveModelReference({ name: 'iris', stage: 'Production' }, versions);
    assert.deepEqual(versions.map((v) => v.metadata.name), before);
  });
});

describe('describeReference', () => {
  const cases: Array<[ModelReference, string]> = [
    [{ name: 'iris', stage: 'Production' }, 'model "iris" in stage Production'],
    [{ name: 'iris', version: 3 }, 'model "iris" version 3'],
    [{ name: 'iris', alias: 'champion' }, 'model "iris" with alias "champion"'],
  ];
  for (const [ref, expected] of cases) it(expected, () => assert.equal(describeReference(ref), expected));
});
