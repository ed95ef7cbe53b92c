import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun, PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import type { KubeClient } from '../../kube/client.ts';
import { ApiError } from '../../kube/errors.ts';
import { NoopMetadataStore } from '../../metadata/noop-store.ts';
import type { ModelVersionCache, RunCache } from '../indexes.ts';
import { registerModels, type RegistrationDeps } from './registration.ts';

// The API server's side of a create, as far as registration cares: names are unique; a reply can be lost.
function apiServer(options: { loseFirstReply?: boolean } = {}) {
  const objects = new Map<string, ModelVersion>();
  let lose = options.loseFirstReply ?? false;
  const client = {
    async create(_r: unknown, _ns: string, object: ModelVersion) {
      if (objects.has(object.metadata.name)) throw new ApiError('POST', '/modelversions', 409, 'AlreadyExists', `${object.metadata.name} already exists`);
      objects.set(object.metadata.name, { ...object, metadata: { ...object.metadata, resourceVersion: String(objects.size + 10) } });
      if (lose) {
        lose = false;
        throw new Error('socket hang up');
      }
      return objects.get(object.metadata.name)!;
    },
    async get(_r: unknown, _ns: string, name: string) {
      const found = objects.get(name);
      if (!found) throw new ApiError('GET', `/modelversions/${name}`, 404, 'NotFound', 'not found');
      return found;
    },
  };
  return { objects, client: client as unknown as KubeClient };
}

// A watch that has not delivered anything yet: the caches are empty.
const emptyCache = { byIndex: () => [], get: () => undefined, recordCreate: () => {} };

const run: PipelineRun = { apiVersion: 'ferry.dev/v1alpha1', kind: 'PipelineRun', metadata: { name: 'r1', namespace: 'ml', uid: 'u1' }, spec: {} };
const status: PipelineRunStatus = {
  configuration: { uri: 'file:///c', digest: `sha256:${'c'.repeat(64)}` },
  steps: [{ name: 'train', phase: 'Succeeded', attempts: 1, outputs: [{ name: 'model', uri: 'file:///m', digest: `sha256:${'a'.repeat(64)}` }] }],
};
const configuration = {
  pipeline: { name: 'p' },
  spec: { steps: [{ name: 'train', image: 'x', outputs: [{ name: 'model', type: 'model', register: { name: 'iris' } }] }] },
} as unknown as PipelineConfiguration;

function depsFor(client: KubeClient, metadata = new NoopMetadataStore()): RegistrationDeps {
  return {
    client, metadata, issuedVersions: new Map(), claimedVersions: new Map(),
    runs: emptyCache as unknown as RunCache, modelVersions: emptyCache as unknown as ModelVersionCache,
  };
}

describe('registerModels', () => {
  it('creates one version per register output and reports it', async () => {
    const api = apiServer();
    const outcome = await registerModels(depsFor(api.client), run, status, configuration, [], undefined);
    assert.deepEqual([...api.objects.keys()], ['iris-v1']);
    assert.deepEqual(outcome.models.get('train'), [{ name: 'iris', version: 1 }]);
    assert.equal(outcome.refused, undefined);
    assert.equal(api.objects.get('iris-v1')?.metadata.labels?.['ferry.dev/run-uid'], 'u1');
  });

  it('after a create whose reply was lost, a retry adopts the same version instead of making a second one', async () => {
    const api = apiServer({ loseFirstReply: true });
    const deps = depsFor(api.client, Object.assign(new NoopMetadataStore(), { healthy: () => false }));
    const first = await registerModels(deps, run, status, configuration, [], undefined);
    assert.match(first.refused ?? '', /socket hang up/);
    const second = await registerModels(deps, run, status, configuration, [], undefined);
    assert.equal(second.refused, undefined);
    assert.deepEqual([...api.objects.keys()], ['iris-v1'], 'one ModelVersion for the one output');
    assert.deepEqual(second.models.get('train'), [{ name: 'iris', version: 1 }]);
  });

  it("takes the next number when another run's version has the name", async () => {
    const api = apiServer();
    await api.client.create({} as never, 'ml', { apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion', metadata: { name: 'iris-v1', namespace: 'ml', labels: { 'ferry.dev/run-uid': 'other' } }, spec: { modelName: 'iris', version: 1, artifact: { uri: 'x', digest: 'y' }, stage: 'None' } });
    const outcome = await registerModels(depsFor(api.client), run, status, configuration, [], undefined);
    assert.deepEqual(outcome.models.get('train'), [{ name: 'iris', version: 2 }]);
    assert.deepEqual([...api.objects.keys()].sort(), ['iris-v1', 'iris-v2']);
  });
});
