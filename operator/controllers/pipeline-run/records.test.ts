import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PipelineRunStatus, StepStatus } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import {
  freezeConfiguration, reproduceConfiguration, type ExternalInput, type PipelineConfiguration,
} from '../../configuration/pipeline-configuration.ts';
import type { RunRecords } from '../../metadata/records.ts';
import { cacheKeyOf } from './cache-key.ts';
import { recordsDigest, recordsOf } from './records.ts';
import { NAMESPACE, PIPELINE_NAME, RUN_NAME, RUN_UID, pipeline, pipelineRun, step } from '../../../test/builders.ts';
import { CONFIGURATION_DIGEST, CONFIGURATION_URI, stamp } from './testing.ts';

const digest = (c: string) => `sha256:${c.repeat(64)}` as const;
const DATASET = { name: 'dataset', uri: `file:///store/${NAMESPACE}/blobs/${digest('1')}`, digest: digest('1'), size: 1000 };
const MODEL = { name: 'model', uri: `file:///store/${NAMESPACE}/blobs/${digest('2')}`, digest: digest('2'), size: 2000 };
const BASE_MODEL: ExternalInput = {
  step: 'fit', input: 'base', uri: `file:///store/${NAMESPACE}/blobs/${digest('3')}`, digest: digest('3'), model: { name: 'iris', version: 2 },
};

// prepare ──dataset──► fit ◄── base (the registered model iris in Production)
const steps = (): StepSpec[] => [
  step('prepare', { outputs: [{ name: 'dataset', type: 'dataset' }] }),
  step('fit', {
    dependsOn: ['prepare'],
    args: ['--epochs', '$(params.epochs)'],
    inputs: [
      { name: 'data', from: { step: 'prepare', output: 'dataset' } },
      { name: 'base', model: { name: 'iris', stage: 'Production' } },
    ],
    outputs: [{ name: 'model', type: 'model' }],
  }),
];

function configurationOf(specSteps: StepSpec[] = steps()): PipelineConfiguration {
  const p = pipeline({ steps: specSteps, parameters: [{ name: 'epochs', type: 'int' }, { name: 'seed', type: 'int' }] });
  return freezeConfiguration({
    run: { namespace: NAMESPACE, name: RUN_NAME, uid: RUN_UID },
    pipeline: p,
    parameters: [{ name: 'epochs', value: '3', source: 'run' }, { name: 'seed', value: '1', source: 'default' }],
    images: new Map(specSteps.map((s) => [s.name, { reference: s.image, pinned: `${s.image}@${digest('d')}`, digest: digest('d') }])),
    externalInputs: [BASE_MODEL],
    operatorVersion: '0.0.0-test',
  });
}

const PREPARE_KEY = digest('a');
const FIT_KEY = digest('b');

function statusOf(prepare: Partial<StepStatus> = {}, fit: Partial<StepStatus> = {}, run: Partial<PipelineRunStatus> = {}): PipelineRunStatus {
  return {
    phase: 'Succeeded',
    startedAt: stamp(-120),
    finishedAt: stamp(-10),
    configuration: { uri: CONFIGURATION_URI, digest: CONFIGURATION_DIGEST },
    steps: [
      {
        name: 'prepare', phase: 'Cached', attempts: 0, cacheKey: PREPARE_KEY, cachedFrom: 'r0',
        startedAt: stamp(-120), finishedAt: stamp(-120), outputs: [DATASET], ...prepare,
      },
      {
        name: 'fit', phase: 'Succeeded', attempts: 2, podName: `${RUN_NAME}-fit-2`, cacheKey: FIT_KEY,
        startedAt: stamp(-110), finishedAt: stamp(-10), outputs: [MODEL], metrics: { accuracy: 0.95 }, ...fit,
      },
    ],
    ...run,
  };
}

/** What cache-key.ts gives for a step of the configuration, with these inputs. */
const componentsOf = (configuration: PipelineConfiguration, name: string, inputs: Array<{ name: string; uri: string; digest: string }>) => {
  const spec = configuration.spec.steps.find((s) => s.name === name)!;
  return cacheKeyOf(spec, new Map(configuration.parameters.map((x) => [x.name, x.value])), inputs).components;
};

describe('recordsOf: a two-step run with an external model input', () => {
  const configuration = configurationOf();
  const records = recordsOf(pipelineRun(), statusOf(), configuration);

  it('records the run', () => {
    assert.deepEqual(records.run, {
      uid: RUN_UID,
      namespace: NAMESPACE,
      name: RUN_NAME,
      pipeline: PIPELINE_NAME,
      pipelineSpecHash: configuration.pipeline.specHash,
      configurationUri: CONFIGURATION_URI,
      configurationDigest: CONFIGURATION_DIGEST,
      phase: 'Succeeded',
      startedAt: stamp(-120),
      finishedAt: stamp(-10),
    });
    assert.match(records.run.pipelineSpecHash, /^sha256:[0-9a-f]{64}$/);
  });

  it('records one execution per step, with its cache key and recomputed components', () => {
    assert.deepEqual(records.executions, [
      {
        runUid: RUN_UID, step: 'prepare', phase: 'Cached', attempts: 0, cacheKey: PREPARE_KEY,
        cacheComponents: componentsOf(configuration, 'prepare', []),
        cachedFrom: 'r0', startedAt: stamp(-120), finishedAt: stamp(-120),
      },
      {
        runUid: RUN_UID, step: 'fit', phase: 'Succeeded', attempts: 2, podName: `${RUN_NAME}-fit-2`, cacheKey: FIT_KEY,
        cacheComponents: componentsOf(configuration, 'fit', [
          { name: 'data', uri: DATASET.uri, digest: DATASET.digest },
          { name: 'base', uri: BASE_MODEL.uri, digest: BASE_MODEL.digest },
        ]),
        startedAt: stamp(-110), finishedAt: stamp(-10), metrics: { accuracy: 0.95 },
      },
    ]);
  });

  it("recomputes components from the inputs' digests, the pinned image and the parameters", () => {
    const fit = records.executions.find((e) => e.step === 'fit')!.cacheComponents!;
    const otherModel = componentsOf(configuration, 'fit', [
      { name: 'data', uri: DATASET.uri, digest: DATASET.digest },
      { name: 'base', uri: BASE_MODEL.uri, digest: digest('4') },
    ]);
    assert.notEqual(fit.inputs, otherModel.inputs);
    const unpinned = cacheKeyOf(steps()[1]!, new Map([['epochs', '3']]), []).components;
    assert.notEqual(fit.image, unpinned.image, 'the image component is of the pinned image');
    assert.equal(fit.parameters, unpinned.parameters);
  });

  it('records each artifact once, typed by the output that produced it', () => {
    // The dataset is produced by prepare and consumed by fit: one record. The registered model is typed model.
    assert.deepEqual(records.artifacts, [
      { namespace: NAMESPACE, uri: DATASET.uri, digest: DATASET.digest, type: 'dataset', size: 1000 },
      { namespace: NAMESPACE, uri: MODEL.uri, digest: MODEL.digest, type: 'model', size: 2000 },
      { namespace: NAMESPACE, uri: BASE_MODEL.uri, digest: BASE_MODEL.digest, type: 'model' },
    ]);
  });

  it('records produced and consumed edges', () => {
    const edge = (s: string, direction: 'produced' | 'consumed', name: string, a: { uri: string; digest: string }) =>
      ({ runUid: RUN_UID, step: s, direction, name, artifactUri: a.uri, artifactDigest: a.digest });
    assert.deepEqual(records.edges, [
      edge('prepare', 'produced', 'dataset', DATASET),
      edge('fit', 'produced', 'model', MODEL),
      edge('fit', 'consumed', 'data', DATASET),
      edge('fit', 'consumed', 'base', BASE_MODEL),
    ]);
  });
});

describe('recordsOf: partial and unusual runs', () => {
  it('records no artifacts or edges for steps that are not done', () => {
    const configuration = configurationOf();
    const status = statusOf({}, { phase: 'Running', attempts: 1, podName: `${RUN_NAME}-fit-1`, finishedAt: undefined, outputs: undefined, metrics: undefined }, { phase: 'Running', finishedAt: undefined });
    const records = recordsOf(pipelineRun(), status, configuration);
    assert.equal(records.run.phase, 'Running');
    assert.equal(records.run.finishedAt, undefined);
    assert.deepEqual(records.executions.map((e) => [e.step, e.phase]), [['prepare', 'Cached'], ['fit', 'Running']]);
    assert.deepEqual(records.artifacts, [{ namespace: NAMESPACE, uri: DATASET.uri, digest: DATASET.digest, type: 'dataset', size: 1000 }]);
    assert.deepEqual(records.edges.map((e) => `${e.step} ${e.direction} ${e.name}`), ['prepare produced dataset']);
  });

  it('records nothing for a failed step, even with outputs in its status', () => {
    const status = statusOf({}, { phase: 'Failed' }, { phase: 'Failed' });
    const records = recordsOf(pipelineRun(), status, configurationOf());
    assert.deepEqual(records.edges.map((e) => `${e.step} ${e.direction} ${e.name}`), ['prepare produced dataset']);
    assert.deepEqual(records.artifacts.map((a) => a.uri), [DATASET.uri]);
  });

  it('records no artifacts and no components for a run whose steps have not started', () => {
    const status: PipelineRunStatus = { steps: [{ name: 'prepare', phase: 'Pending', attempts: 0 }, { name: 'fit', phase: 'Pending', attempts: 0 }] };
    const records = recordsOf(pipelineRun(), status, configurationOf());
    assert.equal(records.run.phase, 'Pending', 'no phase yet reads as Pending');
    assert.equal(records.run.configurationUri, '');
    assert.equal(records.run.configurationDigest, '');
    assert.deepEqual(records.executions, [
      { runUid: RUN_UID, step: 'prepare', phase: 'Pending', attempts: 0 },
      { runUid: RUN_UID, step: 'fit', phase: 'Pending', attempts: 0 },
    ]);
    assert.deepEqual(records.artifacts, []);
    assert.deepEqual(records.edges, []);
  });

  it('types an artifact by its producing output even when the consumer is declared first', () => {
    const [prepare, fit] = steps();
    const configuration = configurationOf([fit!, prepare!]);
    const records = recordsOf(pipelineRun(), statusOf(), configuration);
    // The consumer records it first; the producer's record (with its size) replaces it.
    assert.deepEqual(records.artifacts.find((a) => a.uri === DATASET.uri), { namespace: NAMESPACE, uri: DATASET.uri, digest: DATASET.digest, type: 'dataset', size: 1000 });
    assert.equal(records.artifacts.length, 3);
    assert.equal(records.edges.length, 4);
  });

  it('names the configuration a reproduction came from', () => {
    const source = configurationOf();
    const reproduced = reproduceConfiguration(source, { namespace: NAMESPACE, name: RUN_NAME, uid: RUN_UID, reproducedFrom: { uri: 'file:///store/ml/train/r0/pipeline-configuration.json', digest: digest('e') } });
    const records = recordsOf(pipelineRun(), statusOf(), reproduced);
    assert.equal(records.run.reproducedFrom, 'file:///store/ml/train/r0/pipeline-configuration.json');
    assert.equal(recordsOf(pipelineRun(), statusOf(), source).run.reproducedFrom, undefined);
  });
});

describe('recordsDigest', () => {
  const configuration = configurationOf();
  const records = (status: PipelineRunStatus): RunRecords => recordsOf(pipelineRun(), status, configuration);

  it('is the phase and a sha256 digest', () => {
    assert.match(recordsDigest(records(statusOf())), /^Succeeded:sha256:[0-9a-f]{64}$/);
  });

  it('is stable across calls', () => {
    assert.equal(recordsDigest(records(statusOf())), recordsDigest(records(statusOf())));
    assert.equal(recordsDigest(records(statusOf())), recordsDigest(structuredClone(records(statusOf()))));
  });

  it('changes with the phase', () => {
    const succeeded = recordsDigest(records(statusOf()));
    const failed = recordsDigest(records(statusOf({}, {}, { phase: 'Failed' })));
    assert.match(failed, /^Failed:/);
    assert.notEqual(failed.split(':').slice(1).join(':'), succeeded.split(':').slice(1).join(':'));
  });

  it('changes with what was recorded', () => {
    assert.notEqual(recordsDigest(records(statusOf())), recordsDigest(records(statusOf({}, { metrics: { accuracy: 0.96 } }))));
  });
});
