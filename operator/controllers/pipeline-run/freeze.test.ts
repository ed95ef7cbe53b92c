// Unit tests of freezing a run (freeze.ts) with fake dependencies: an in-memory artifact store
// with the write-once contract, a fake registry, the real LRU cache and cache lookups as
// closures over arrays. First the outcomes that need one call, as a table, and the pure
// checkPipeline; then the ones that need a store with history (read back, adopt, conflict,
// tamper, reproduce, resume) and the external inputs (registered models, other pipelines' outputs).
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { ModelStage, ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { PipelineRun } from '../../api/v1alpha1/pipeline-run.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import { LruCache } from '../../artifacts/config-cache.ts';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, type ArtifactStore, type StoredObject } from '../../artifacts/store.ts';
import { sha256Hex } from '../../configuration/canonical-json.ts';
import { CONFIGURATION_MAX_BYTES, configurationKey, serializeConfiguration, type PipelineConfiguration } from '../../configuration/pipeline-configuration.ts';
import { ImageResolutionError, type ImageResolver, type ResolvedImage } from '../../images/resolver.ts';
import { NAMESPACE, PIPELINE_NAME, RUN_NAME, RUN_UID, TEST_IMAGE, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import { IMAGE_RESOLUTION_CONCURRENCY, IMAGE_RESOLUTION_DEADLINE_MS, checkPipeline, placementProblem, freezeRun, loadConfiguration, type FreezeDeps, type FreezeOutcome } from './freeze.ts';
import { ImageResolutionQueue } from '../../images/resolution-queue.ts';

const digest = (c: string) => `sha256:${c.repeat(64)}` as const;
const TAG = 'registry.local/ferry/train:1.0';
const TAG_DIGEST = digest('a');

/** An artifact store in memory, keeping the contract: createOnce refuses to overwrite, reads of nothing throw. */
class MemoryStore implements ArtifactStore {
  readonly root = 'mem://store';
  readonly objects = new Map<string, Buffer>();
  writes = 0;
  reads = 0;

  uriFor(key: string): string {
    return `${this.root}/${key}`;
  }

  keyOf(uri: string): string {
    if (!uri.startsWith(`${this.root}/`)) throw new Error(`${uri} is not under ${this.root}`);
    return uri.slice(this.root.length + 1);
  }

  async putBlob(namespace: string, source: Readable): Promise<StoredObject> {
    const chunks: Buffer[] = [];
    for await (const chunk of source) chunks.push(Buffer.from(chunk as Uint8Array));
    const bytes = Buffer.concat(chunks);
    const hex = sha256Hex(bytes);
    const uri = this.uriFor(`${namespace}/blobs/sha256/${hex}`);
    if (!this.objects.has(uri)) this.objects.set(uri, bytes);
    return { uri, digest: `sha256:${hex}`, size: bytes.length };
  }

  async createOnce(key: string, data: Uint8Array): Promise<StoredObject> {
    const uri = this.uriFor(key);
    if (this.objects.has(uri)) throw new ObjectExistsError(uri);
    this.objects.set(uri, Buffer.from(data));
    this.writes++;
    return { uri, digest: `sha256:${sha256Hex(data)}`, size: data.length };
  }

  async read(uri: string): Promise<Readable> {
    return Readable.from([await this.readAll(uri, Number.MAX_SAFE_INTEGER)]);
  }

  async readAll(uri: string, maxBytes: number): Promise<Buffer> {
    const bytes = this.objects.get(uri);
    if (!bytes) throw new ObjectNotFoundError(uri);
    if (bytes.length > maxBytes) throw new ObjectTooLargeError(uri, maxBytes);
    this.reads++;
    return Buffer.from(bytes);
  }

  async exists(uri: string): Promise<boolean> {
    return this.objects.has(uri);
  }

  async list(prefix: string): Promise<string[]> {
    const base = `${this.root}/`;
    return [...this.objects.keys()].map((uri) => uri.slice(base.length)).filter((key) => key.startsWith(prefix)).sort();
  }

  async delete(uri: string): Promise<void> {
    this.objects.delete(uri);
  }
}

/** A registry that knows some tags; a reference with a digest is returned as is, as the real resolver does. */
class FakeRegistry implements ImageResolver {
  readonly asked: string[] = [];
  private readonly tags: Record<string, `sha256:${string}` | ImageResolutionError>;
  constructor(tags: Record<string, `sha256:${string}` | ImageResolutionError>) {
    this.tags = tags;
  }

  async resolve(reference: string): Promise<ResolvedImage> {
    const at = reference.indexOf('@sha256:');
    if (at >= 0) return { reference, pinned: reference, digest: reference.slice(at + 1) as `sha256:${string}` };
    this.asked.push(reference);
    const known = this.tags[reference];
    if (known instanceof ImageResolutionError) throw known;
    if (!known) throw new ImageResolutionError(reference, 'manifest unknown', false);
    return { reference, pinned: `${reference.slice(0, reference.lastIndexOf(':'))}@${known}`, digest: known };
  }
}

interface World {
  pipelines?: Pipeline[];
  runs?: PipelineRun[];
  models?: ModelVersion[];
  tags?: Record<string, `sha256:${string}` | ImageResolutionError>;
  /** Shared between calls to show what an earlier pass (or another run) left in the store. */
  store?: MemoryStore;
}

type TestDeps = FreezeDeps & { store: MemoryStore; registry: FakeRegistry; resolutions: string[] };

function depsOf(world: World = {}): TestDeps {
  const pipelines = world.pipelines ?? [];
  const runs = world.runs ?? [];
  const models = world.models ?? [];
  const resolutions: string[] = [];
  const registry = new FakeRegistry(world.tags ?? { [TAG]: TAG_DIGEST });
  const inNamespace = (namespace: string) => (o: { metadata: { namespace?: string } }) => o.metadata.namespace === namespace;
  return {
    store: world.store ?? new MemoryStore(),
    registry,
    // The operator's queue; the fake registry answers at once, well within the wait.
    images: new ImageResolutionQueue(registry, {
      concurrency: 4, perRunConcurrency: IMAGE_RESOLUTION_CONCURRENCY, deadlineMs: IMAGE_RESOLUTION_DEADLINE_MS,
      answerWithinMs: 5_000, keepMs: 60_000, onResolved: () => undefined,
    }),
    configurations: new LruCache<PipelineConfiguration>(16),
    operatorVersion: '0.0.0-test',
    resolutions,
    pipelineOf: (namespace, name) => pipelines.filter(inNamespace(namespace)).find((p) => p.metadata.name === name),
    runOf: (namespace, name) => runs.filter(inNamespace(namespace)).find((r) => r.metadata.name === name),
    modelVersionsOf: (namespace, model) => models.filter(inNamespace(namespace)).filter((v) => v.spec.modelName === model),
    runsOfPipeline: (namespace, name) => runs.filter(inNamespace(namespace)).filter((r) => r.spec.pipelineRef?.name === name),
    onImageResolution: (result) => resolutions.push(result),
    credentialsFrom: async () => () => undefined,
  };
}

/** A registered model version, as the registration of a training run creates it. */
function modelVersion(model: string, version: number, stage: ModelStage, extra: Partial<ModelVersion['spec']> = {}): ModelVersion {
  return {
    apiVersion: 'ferry.dev/v1alpha1',
    kind: 'ModelVersion',
    metadata: { name: `${model}-v${version}`, namespace: NAMESPACE },
    spec: { modelName: model, version, stage, artifact: { uri: `mem://store/${NAMESPACE}/blobs/sha256/${String(version).repeat(64)}`, digest: digest(String(version)) }, ...extra },
  };
}

const frozen = (outcome: FreezeOutcome) => {
  assert.equal(outcome.kind, 'frozen', `frozen, not ${JSON.stringify(outcome)}`);
  return outcome as Extract<FreezeOutcome, { kind: 'frozen' }>;
};

/** The run as the next reconcile reads it, once status.configuration was written. */
const recorded = (run: PipelineRun, { uri, digest }: { uri: string; digest: string }): PipelineRun =>
  ({ ...run, status: { phase: 'Running', configuration: { uri, digest } } });

const trainer = (extra: Partial<Pipeline['spec']> = {}) =>
  pipeline({ steps: [step('prepare', { image: TAG }), step('fit', { dependsOn: ['prepare'] })], ...extra });

describe('freezeRun: a run that cannot start (yet)', () => {
  const cases: Array<{ name: string; world: World; run?: PipelineRun; kind: 'waiting' | 'failed'; reason: string; backoff?: true; message?: RegExp }> = [
    {
      name: 'its Pipeline is missing: it waits for it (no backoff, the Pipeline event wakes it)',
      world: {}, kind: 'waiting', reason: Reasons.PipelineNotFound, message: /pipeline "train" not found in namespace "ml"/,
    },
    {
      name: 'its Pipeline is invalid: it fails',
      world: { pipelines: [pipeline({ steps: [step('a', { dependsOn: ['b'] }), step('b', { dependsOn: ['a'] })] })] },
      kind: 'failed', reason: Reasons.InvalidPipeline, message: /^pipeline "train" is invalid: /,
    },
    {
      name: 'its parameters do not fit the Pipeline: it fails',
      world: { pipelines: [trainer({ parameters: [{ name: 'epochs', type: 'int' }] })] },
      run: pipelineRun({ parameters: [{ name: 'epochs', value: 'many' }] }),
      kind: 'failed', reason: Reasons.InvalidParameters, message: /epochs/,
    },
    {
      name: 'RequireDigest and a step image with a tag: it fails before asking the registry',
      world: { pipelines: [trainer({ imagePolicy: 'RequireDigest' })] },
      kind: 'failed', reason: Reasons.ImageNotPinned, message: /step "prepare": image registry.local\/ferry\/train:1.0 has no digest/,
    },
    {
      name: 'the registry is down: it waits, retried with backoff',
      world: { pipelines: [trainer()], tags: { [TAG]: new ImageResolutionError(TAG, '503 Service Unavailable', true) } },
      kind: 'waiting', reason: Reasons.ImageResolutionFailed, backoff: true, message: /^step "prepare": image registry.local\/ferry\/train:1.0: 503/,
    },
    {
      name: 'the registry does not know the tag: it fails',
      world: { pipelines: [trainer()], tags: {} },
      kind: 'failed', reason: Reasons.ImageResolutionFailed, message: /manifest unknown/,
    },
    {
      name: 'modelRef to a version bound to no inference pipeline: it fails',
      world: { models: [modelVersion('iris', 1, 'Production')] },
      run: pipelineRun({ modelRef: { name: 'iris', version: 1 } }),
      kind: 'failed', reason: Reasons.ModelNotBound, message: /iris-v1 names no inference pipeline/,
    },
    {
      name: 'modelRef to a version that does not exist: it fails',
      world: { models: [modelVersion('iris', 1, 'Production')] },
      run: pipelineRun({ modelRef: { name: 'iris', version: 7 } }),
      kind: 'failed', reason: Reasons.ModelNotFound, message: /model "iris" version 7 does not exist \(registered: v1 \(Production\)\)/,
    },
    {
      name: 'a model input nobody registered: it fails',
      world: { pipelines: [pipeline({ steps: [step('use', { inputs: [{ name: 'm', model: { name: 'penguins', alias: 'champion' } }] })] })] },
      kind: 'failed', reason: Reasons.ModelNotFound, message: /^step "use" input "m": model "penguins" with alias "champion" does not exist/,
    },
    {
      name: 'a fromPipeline input with no succeeded run: it fails',
      world: {
        pipelines: [pipeline({ steps: [step('use', { inputs: [{ name: 'd', fromPipeline: { name: 'etl', step: 'load', output: 'rows' } }] })] })],
        runs: [pipelineRun({ name: 'etl-1', uid: 'uid-etl-1', pipeline: 'etl', status: { phase: 'Failed' } })],
      },
      kind: 'failed', reason: Reasons.ArtifactNotFound, message: /a succeeded run of pipeline "etl" with output "rows" of step "load" does not exist/,
    },
    {
      name: 'reproduceFrom a run that does not exist: it fails',
      world: {}, run: pipelineRun({ name: 'r2', reproduceFrom: { run: 'r0' } }),
      kind: 'failed', reason: Reasons.ReproductionSourceNotFound, message: /run "r0" to reproduce not found/,
    },
    {
      name: 'reproduceFrom a run not frozen yet: it waits, retried with backoff',
      world: { runs: [pipelineRun({ name: 'r0', uid: 'uid-r0' })] }, run: pipelineRun({ name: 'r2', reproduceFrom: { run: 'r0' } }),
      kind: 'waiting', reason: Reasons.ReproductionSourceNotFound, backoff: true, message: /run "r0" has no frozen configuration yet/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const deps = depsOf(c.world);
      const outcome = await freezeRun(deps, c.run ?? pipelineRun());
      assert.ok(outcome.kind === c.kind, JSON.stringify(outcome));
      assert.equal(outcome.reason, c.reason);
      assert.equal(outcome.kind === 'waiting' ? outcome.backoff : undefined, c.backoff);
      if (c.message) assert.match(outcome.message, c.message);
      assert.equal(deps.store.objects.size, 0, 'nothing written');
    });
  }

  it('asks the registry for nothing when RequireDigest refuses a tag', async () => {
    const deps = depsOf({ pipelines: [trainer({ imagePolicy: 'RequireDigest' })] });
    await freezeRun(deps, pipelineRun());
    assert.deepEqual(deps.registry.asked, []);
  });
});

describe('checkPipeline', () => {
  it('gives the Pipeline and the parameters resolved from the run and the defaults', () => {
    const p = trainer({ parameters: [{ name: 'epochs', type: 'int', default: 3 }, { name: 'lr', type: 'float', default: '0.1' }] });
    const checked = checkPipeline(pipelineRun({ parameters: [{ name: 'epochs', value: 5 }] }), p);
    assert.equal(checked.kind, 'ok');
    assert.equal(checked.pipeline, p);
    assert.deepEqual(checked.parameters, [{ name: 'epochs', value: '5', source: 'run' }, { name: 'lr', value: '0.1', source: 'default' }]);
  });

  it('names the missing Pipeline by the run\'s pipelineRef', () => {
    const checked = checkPipeline(pipelineRun({ namespace: 'team-a', pipeline: 'nightly' }), undefined);
    assert.deepEqual(checked, { kind: 'waiting', reason: Reasons.PipelineNotFound, message: 'pipeline "nightly" not found in namespace "team-a"' });
  });
});

describe('freezeRun: freezing once and reading back', () => {
  it('writes a fresh configuration once, images pinned, under the run key', async () => {
    const deps = depsOf({ pipelines: [trainer()] });
    const outcome = frozen(await freezeRun(deps, pipelineRun()));
    assert.equal(outcome.written, true);
    assert.equal(outcome.uri, deps.store.uriFor(configurationKey(NAMESPACE, PIPELINE_NAME, RUN_NAME)));
    assert.equal(deps.store.writes, 1);
    const bytes = deps.store.objects.get(outcome.uri);
    assert.ok(bytes);
    assert.equal(outcome.digest, `sha256:${sha256Hex(bytes)}`);
    assert.equal(outcome.digest, serializeConfiguration(outcome.configuration).digest);
    assert.deepEqual(outcome.configuration.run, { namespace: NAMESPACE, name: RUN_NAME, uid: RUN_UID });
    assert.deepEqual(outcome.configuration.spec.steps.map((s) => s.image), [`registry.local/ferry/train@${TAG_DIGEST}`, TEST_IMAGE]);
    assert.deepEqual(outcome.configuration.images.map((i) => [i.step, i.reference, i.digest]), [
      ['prepare', TAG, TAG_DIGEST],
      ['fit', TEST_IMAGE, digest('0')],
    ]);
    assert.deepEqual(deps.resolutions, ['resolved', 'pinned']);
  });

  it('reads a recorded configuration back, verified by digest, then from the cache by digest', async () => {
    const deps = depsOf({ pipelines: [trainer()] });
    const first = frozen(await freezeRun(deps, pipelineRun()));
    const readsAfterWrite = deps.store.reads;
    const again = frozen(await freezeRun(deps, recorded(pipelineRun(), first)));
    assert.equal(again.written, false);
    assert.deepEqual([again.uri, again.digest], [first.uri, first.digest]);
    assert.deepEqual(again.configuration, first.configuration);
    assert.equal(deps.store.reads, readsAfterWrite, 'served from the cache the write filled');
    assert.equal(deps.store.writes, 1);

    // Another operator process (an empty cache) reads the store once, then caches.
    const restarted: TestDeps = { ...depsOf({ store: deps.store }), pipelineOf: () => undefined };
    const reads = deps.store.reads;
    const read = frozen(await freezeRun(restarted, recorded(pipelineRun(), first)));
    assert.deepEqual(read.configuration, first.configuration);
    assert.equal(deps.store.reads, reads + 1);
    assert.ok(restarted.configurations.get(first.digest));
    await freezeRun(restarted, recorded(pipelineRun(), first));
    assert.equal(deps.store.reads, reads + 1, 'the second read came from the cache');
  });

  it('never reads the Pipeline again once the configuration is recorded', async () => {
    const deps = depsOf({ pipelines: [trainer()] });
    const first = frozen(await freezeRun(deps, pipelineRun()));
    const edited = depsOf({ store: deps.store, pipelines: [trainer({ timeoutSeconds: 5 })] });
    const again = frozen(await freezeRun(edited, recorded(pipelineRun(), first)));
    assert.equal(again.configuration.spec.timeoutSeconds, undefined);
    const gone = depsOf({ store: deps.store });
    assert.equal((await freezeRun(gone, recorded(pipelineRun(), first))).kind, 'frozen');
  });

  it('adopts the configuration an earlier pass of the same run wrote (its status write was lost)', async () => {
    const store = new MemoryStore();
    const first = frozen(await freezeRun(depsOf({ store, pipelines: [trainer()] }), pipelineRun()));
    const deps = depsOf({ store, pipelines: [trainer()] });
    const adopted = frozen(await freezeRun(deps, pipelineRun()));
    assert.equal(adopted.written, false);
    assert.deepEqual([adopted.uri, adopted.digest], [first.uri, first.digest]);
    assert.deepEqual(adopted.configuration, first.configuration);
    assert.equal(store.writes, 1);
    assert.ok(deps.configurations.get(first.digest), 'cached by digest');
  });

  it('refuses the configuration of an earlier run with the same name (another uid)', async () => {
    const store = new MemoryStore();
    await freezeRun(depsOf({ store, pipelines: [trainer()] }), pipelineRun({ uid: 'uid-of-a-deleted-run' }));
    const outcome = await freezeRun(depsOf({ store, pipelines: [trainer()] }), pipelineRun());
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.ConfigurationConflict);
    assert.match(outcome.message, /belongs to an earlier run named "r1" \(uid uid-of-a-deleted-run\); use another run name/);
  });

  it('fails a run whose stored configuration was changed (ConfigurationTampered)', async () => {
    const store = new MemoryStore();
    const first = frozen(await freezeRun(depsOf({ store, pipelines: [trainer()] }), pipelineRun()));
    const bytes = store.objects.get(first.uri)!;
    store.objects.set(first.uri, Buffer.from(bytes.toString('utf8').replace(TAG_DIGEST, digest('e'))));
    const outcome = await freezeRun(depsOf({ store }), recorded(pipelineRun(), first));
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.ConfigurationTampered);
    assert.match(outcome.message, new RegExp(`expected digest ${first.digest}`));
  });

  it('fails a run whose stored configuration is gone (ConfigurationMissing)', async () => {
    const store = new MemoryStore();
    const first = frozen(await freezeRun(depsOf({ store, pipelines: [trainer()] }), pipelineRun()));
    await store.delete(first.uri);
    const outcome = await freezeRun(depsOf({ store }), recorded(pipelineRun(), first));
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.ConfigurationMissing);
  });

  it('passes store errors other than not-found on (a transient failure, retried)', async () => {
    const store = new MemoryStore();
    store.readAll = async () => { throw new Error('connection reset'); };
    await assert.rejects(freezeRun(depsOf({ store }), recorded(pipelineRun(), { uri: `mem://store/${NAMESPACE}/x`, digest: digest('1') })), /connection reset/);
  });
});

describe('loadConfiguration', () => {
  it('checks the digest and caches what it read by digest', async () => {
    const deps = depsOf({ pipelines: [trainer()] });
    const first = frozen(await freezeRun(deps, pipelineRun()));
    const fresh = depsOf({ store: deps.store });
    assert.deepEqual(await loadConfiguration(fresh, first.uri, first.digest), first.configuration);
    assert.equal(fresh.configurations.size, 1);
    await assert.rejects(loadConfiguration(depsOf({ store: deps.store }), first.uri, digest('f')), { name: 'ConfigurationDigestError' });
  });
});

describe('freezeRun: reproducing and resuming', () => {
  /** r0 frozen from the trainer Pipeline, and a store holding its configuration. */
  async function source() {
    const store = new MemoryStore();
    const r0 = pipelineRun({ name: 'r0', uid: 'uid-r0' });
    const outcome = frozen(await freezeRun(depsOf({ store, pipelines: [trainer()] }), r0));
    return { store, outcome, r0: recorded(r0, outcome) };
  }

  it('reproduceFrom a run copies its configuration with a new identity, whatever the Pipeline is now', async () => {
    const { store, outcome, r0 } = await source();
    const deps = depsOf({ store, runs: [r0] }); // the Pipeline was deleted since
    const copy = frozen(await freezeRun(deps, pipelineRun({ name: 'r2', uid: 'uid-r2', reproduceFrom: { run: 'r0' } })));
    assert.equal(copy.written, true);
    assert.deepEqual(copy.configuration.run, { namespace: NAMESPACE, name: 'r2', uid: 'uid-r2', reproducedFrom: { uri: outcome.uri, digest: outcome.digest } });
    assert.deepEqual({ ...copy.configuration, run: undefined }, { ...outcome.configuration, run: undefined });
    assert.equal(copy.uri, store.uriFor(configurationKey(NAMESPACE, PIPELINE_NAME, 'r2')));
    assert.deepEqual(deps.registry.asked, [], 'the pinned images are reused, not resolved again');
  });

  it('reproduceFrom a {uri, digest} copies it when the digest matches', async () => {
    const { store, outcome } = await source();
    const copy = frozen(await freezeRun(depsOf({ store }), pipelineRun({ name: 'r2', uid: 'uid-r2', reproduceFrom: { configuration: { uri: outcome.uri, digest: outcome.digest } } })));
    assert.deepEqual(copy.configuration.spec, outcome.configuration.spec);
  });

  it("holds a reproduction to today's placement policy (PlacementNotAllowed), whatever it was when the source ran", async () => {
    const store = new MemoryStore();
    const r0 = pipelineRun({ name: 'r0', uid: 'uid-r0' });
    const placed = pipeline({ steps: [step('a', { priorityClassName: 'batch-high' })] });
    const outcome = frozen(await freezeRun(depsOf({ store, pipelines: [placed] }), r0));
    const deps = { ...depsOf({ store, runs: [recorded(r0, outcome)] }), placement: { priorityClasses: ['batch-low'] } };
    const result = await freezeRun(deps, pipelineRun({ name: 'r2', uid: 'uid-r2', reproduceFrom: { run: 'r0' } }));
    assert.equal(result.kind, 'failed');
    assert.equal(result.reason, Reasons.PlacementNotAllowed);
    assert.equal(result.message, 'step "a": priorityClassName "batch-high" is not allowed here (allowed: batch-low)');
  });

  it('refuses to reproduce a {uri, digest} whose digest does not match (ConfigurationDigestMismatch)', async () => {
    const { store, outcome } = await source();
    const wrong = pipelineRun({ name: 'r2', reproduceFrom: { configuration: { uri: outcome.uri, digest: digest('0') } } });
    const result = await freezeRun(depsOf({ store }), wrong);
    assert.equal(result.kind, 'failed');
    assert.equal(result.reason, Reasons.ConfigurationDigestMismatch);
    assert.equal(result.message, `refusing to reproduce: configuration ${outcome.uri} does not have the expected digest ${digest('0')}`);
    assert.ok(!result.message.includes(outcome.digest), 'the real digest is not disclosed');
    assert.equal(store.writes, 1, 'only the source was ever written');
  });

  it('refuses to reproduce a {uri, digest} that is not in the store', async () => {
    const result = await freezeRun(depsOf(), pipelineRun({ name: 'r2', reproduceFrom: { configuration: { uri: `mem://store/${NAMESPACE}/nothing`, digest: digest('0') } } }));
    assert.equal(result.kind, 'failed');
    assert.equal(result.reason, Reasons.ReproductionSourceNotFound);
  });

  it('refuses to reproduce another namespace\'s configuration, without reading it or saying what it holds (CrossNamespaceReference)', async () => {
    const store = new MemoryStore();
    const other = frozen(await freezeRun(depsOf({ store, pipelines: [{ ...trainer(), metadata: { ...trainer().metadata, namespace: 'team-b' } }] }), pipelineRun({ namespace: 'team-b', uid: 'uid-b' })));
    const reads = store.reads;
    const result = await freezeRun(depsOf({ store }), pipelineRun({ name: 'r2', reproduceFrom: { configuration: { uri: other.uri, digest: digest('0') } } }));
    assert.equal(result.kind, 'failed');
    assert.equal(result.reason, Reasons.CrossNamespaceReference);
    assert.equal(result.message, `refusing to reproduce: the configuration to reproduce does not name an object of namespace "${NAMESPACE}" in the artifact store`);
    assert.equal(store.reads, reads, 'nothing was read');
  });

  it('refuses a URI outside the store and a legacy blob URI another namespace never copied', async () => {
    for (const uri of ['file:///etc/passwd', `mem://store/../team-b/x`, `mem://store/blobs/sha256/${'a'.repeat(64)}`]) {
      const result = await freezeRun(depsOf(), pipelineRun({ name: 'r2', reproduceFrom: { configuration: { uri, digest: digest('0') } } }));
      assert.equal(result.kind, 'failed', uri);
      assert.ok(result.reason === Reasons.CrossNamespaceReference || result.reason === Reasons.ReproductionSourceNotFound, `${uri}: ${result.reason}`);
      assert.ok(!result.message.includes('sha256:a'), 'no digest disclosed');
    }
  });

  it('refuses to reproduce an object over the configuration limit before reading it (ReproductionSourceTooLarge)', async () => {
    const store = new MemoryStore();
    const uri = store.uriFor(`${NAMESPACE}/outputs/huge`);
    store.objects.set(uri, Buffer.alloc(CONFIGURATION_MAX_BYTES + 1));
    const result = await freezeRun(depsOf({ store }), pipelineRun({ name: 'r2', reproduceFrom: { configuration: { uri, digest: digest('0') } } }));
    assert.equal(result.kind, 'failed');
    assert.equal(result.reason, Reasons.ReproductionSourceTooLarge);
    assert.equal(store.reads, 0);
  });

  it('resumeFrom a run freezes the same configuration, reproduced from it', async () => {
    const { store, outcome, r0 } = await source();
    const resumed = frozen(await freezeRun(depsOf({ store, runs: [r0] }), pipelineRun({ name: 'r0-resumed', uid: 'uid-r3', resumeFrom: 'r0' })));
    assert.equal(resumed.written, true);
    assert.deepEqual(resumed.configuration.spec, outcome.configuration.spec);
    assert.deepEqual(resumed.configuration.run.reproducedFrom, { uri: outcome.uri, digest: outcome.digest });
    assert.equal(resumed.configuration.run.name, 'r0-resumed');
  });
});

describe('freezeRun: inputs from outside the run are pinned', () => {
  it('a model input resolves to the digest of the ModelVersion its reference names', async () => {
    const uses = pipeline({ steps: [step('score', { inputs: [{ name: 'base', model: { name: 'iris', stage: 'Production' } }] })] });
    const models = [modelVersion('iris', 1, 'Archived'), modelVersion('iris', 2, 'Production'), modelVersion('iris', 3, 'Staging')];
    const outcome = frozen(await freezeRun(depsOf({ pipelines: [uses], models }), pipelineRun()));
    assert.deepEqual(outcome.configuration.externalInputs, [
      { step: 'score', input: 'base', uri: models[1]!.spec.artifact.uri, digest: digest('2'), model: { name: 'iris', version: 2 } },
    ]);
  });

  it('a model whose artifact is another namespace\'s object is refused (CrossNamespaceReference)', async () => {
    const uses = pipeline({ steps: [step('score', { inputs: [{ name: 'base', model: { name: 'iris', stage: 'Production' } }] })] });
    const forged = modelVersion('iris', 1, 'Production');
    forged.spec.artifact.uri = `mem://store/team-b/blobs/sha256/${'1'.repeat(64)}`;
    const outcome = await freezeRun(depsOf({ pipelines: [uses], models: [forged] }), pipelineRun());
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.CrossNamespaceReference);
    assert.match(outcome.message, /^step "score" input "base": the artifact of iris-v1 does not name an object of namespace/);
  });

  it('a run with modelRef runs the bound inference Pipeline on exactly that version', async () => {
    const predict = pipeline({ name: 'iris-predict', steps: [step('predict', { inputs: [{ name: 'model', model: { name: 'iris', stage: 'Production' } }] })] });
    const models = [
      modelVersion('iris', 1, 'Staging', { inference: { pipeline: 'iris-predict', specHash: digest('9') } }),
      modelVersion('iris', 2, 'Production'),
    ];
    const outcome = frozen(await freezeRun(depsOf({ pipelines: [predict], models }), pipelineRun({ modelRef: { name: 'iris', version: 1 } })));
    assert.equal(outcome.configuration.pipeline.name, 'iris-predict');
    assert.equal(outcome.uri, `mem://store/${configurationKey(NAMESPACE, 'iris-predict', RUN_NAME)}`);
    assert.deepEqual(outcome.configuration.externalInputs.map((i) => [i.input, i.digest, i.model]), [['model', digest('1'), { name: 'iris', version: 1 }]]);
  });

  it("a fromPipeline input resolves to the newest succeeded run's output", async () => {
    const uses = pipeline({ steps: [step('use', { inputs: [{ name: 'd', fromPipeline: { name: 'etl', step: 'load', output: 'rows' } }] })] });
    const etlRun = (name: string, phase: 'Succeeded' | 'Failed', finishedAt: string, c: string) => pipelineRun({
      name, uid: `uid-${name}`, pipeline: 'etl',
      status: { phase, finishedAt, steps: [{ name: 'load', phase, attempts: 1, outputs: [{ name: 'rows', uri: `mem://store/${NAMESPACE}/blobs/${c}`, digest: digest(c), size: 1 }] }] },
    });
    const runs = [
      etlRun('etl-1', 'Succeeded', '2030-01-01T10:00:00Z', '1'),
      etlRun('etl-2', 'Succeeded', '2030-01-01T11:00:00Z', '2'),
      etlRun('etl-3', 'Failed', '2030-01-01T12:00:00Z', '3'),
    ];
    const outcome = frozen(await freezeRun(depsOf({ pipelines: [uses], runs }), pipelineRun()));
    assert.deepEqual(outcome.configuration.externalInputs, [{
      step: 'use', input: 'd', uri: `mem://store/${NAMESPACE}/blobs/2`, digest: digest('2'),
      pipelineOutput: { pipeline: 'etl', run: 'etl-2', step: 'load', output: 'rows' },
    }]);
  });
});

describe('placementProblem: what the admin allows steps', () => {
  const steps = [step('a', { nodeSelector: { pool: 'gpu' }, tolerations: [{ key: 'gpu', operator: 'Exists' }] })];
  const cases: Array<[string, Parameters<typeof placementProblem>[1], string | undefined]> = [
    ['no policy', undefined, undefined],
    ['any key (lists left out)', {}, undefined],
    ['allowed keys', { nodeSelectorKeys: ['pool'], tolerationKeys: ['gpu'] }, undefined],
    ['a nodeSelector key not listed', { nodeSelectorKeys: ['zone'] }, 'step "a": nodeSelector key "pool" is not allowed here (allowed: zone)'],
    ['no tolerations allowed', { tolerationKeys: [] }, 'step "a": a toleration of "gpu" is not allowed here (allowed: none)'],
  ];
  for (const [name, policy, expected] of cases) it(name, () => assert.equal(placementProblem(steps, policy), expected));

  const scheduled = [step('b', {
    priorityClassName: 'batch-high',
    runtimeClassName: 'gvisor',
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['gpu'] }] }] },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: 'zone', operator: 'Exists' }] } }],
      },
      podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname' }] },
    },
  })];
  const allKeys = ['pool', 'zone', 'kubernetes.io/hostname'];
  const scheduling: Array<[string, Parameters<typeof placementProblem>[1], string | undefined]> = [
    ['affinity keys, priority and runtime class all allowed', { nodeSelectorKeys: allKeys, priorityClasses: ['batch-high'], runtimeClasses: ['gvisor'] }, undefined],
    ['a required nodeAffinity key not listed', { nodeSelectorKeys: ['zone'] }, 'step "b": nodeAffinity key "pool" is not allowed here (allowed: zone)'],
    ['a preferred nodeAffinity key not listed', { nodeSelectorKeys: ['pool', 'kubernetes.io/hostname'] }, 'step "b": nodeAffinity key "zone" is not allowed here (allowed: pool, kubernetes.io/hostname)'],
    ['a pod anti-affinity topologyKey not listed', { nodeSelectorKeys: ['pool', 'zone'] }, 'step "b": pod affinity topologyKey "kubernetes.io/hostname" is not allowed here (allowed: pool, zone)'],
    ['a priority class not listed', { priorityClasses: ['batch-low'] }, 'step "b": priorityClassName "batch-high" is not allowed here (allowed: batch-low)'],
    ['no runtime class allowed', { runtimeClasses: [] }, 'step "b": runtimeClassName "gvisor" is not allowed here (allowed: none)'],
  ];
  for (const [name, policy, expected] of scheduling) it(name, () => assert.equal(placementProblem(scheduled, policy), expected));
  it('a step that names no class fits any class list', () => assert.equal(placementProblem(steps, { priorityClasses: [], runtimeClasses: [] }), undefined));

  it("fails a run whose podMetadata uses a key that is not the user's (InvalidPodMetadata)", async () => {
    const run = pipelineRun({ podMetadata: { labels: { 'ferry.dev/step': 'x' } } });
    const outcome = await freezeRun(depsOf({ pipelines: [pipeline({ steps })] }), run);
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.InvalidPodMetadata);
    assert.equal(outcome.message, 'spec.podMetadata: label key "ferry.dev/step" cannot be set: it is Ferry\'s own');
  });

  it('fails the run with PlacementNotAllowed before any image is resolved', async () => {
    const placed = pipeline({ steps });
    const outcome = await freezeRun({ ...depsOf({ pipelines: [placed] }), placement: { nodeSelectorKeys: [] } }, pipelineRun());
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.reason, Reasons.PlacementNotAllowed);
  });
});
