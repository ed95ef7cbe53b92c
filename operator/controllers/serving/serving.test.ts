// The pure parts of an endpoint: its objects, the intent that decides a rollout, how its
// status moves, why a rollout is not ready, and what a ModelVersion says of its endpoints.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import { CONDITION_SERVING, Reasons } from '../../api/v1alpha1/conditions.ts';
import type { ModelVersion } from '../../api/v1alpha1/model-version.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';
import type { ServingSpec, ServingStatus } from '../../api/v1alpha1/serving.ts';
import { ENV } from '../../agent/protocol.ts';
import type { Pod } from '../../kube/pod.ts';
import { NAMESPACE, TEST_IMAGE, pipeline as pipelineOf, step } from '../../../test/builders.ts';
import { versionServing } from '../model-version/endpoints.ts';
import { MODEL_FETCH_CONTAINER, SERVER_CONTAINER, buildDeployment, buildService, endpointName, servingIntent } from './endpoint-objects.ts';
import { diagnoseRollout } from './rollout-diagnosis.ts';
import { becameLive, stoppedServing } from './serving-status.ts';

const serving: ServingSpec = {
  model: { name: 'iris', stage: 'Production' }, image: 'registry.local/iris:1', command: ['python3', 'serve.py'], port: 8080,
  readinessPath: '/healthz', replicas: 2, rolloutTimeoutSeconds: 60, env: [{ name: 'LOG_LEVEL', value: 'info' }],
};
const pipeline: Pipeline = { ...pipelineOf({ name: 'iris-predict', steps: [step('predict')] }), spec: { steps: [step('predict')], serving } };
pipeline.metadata.uid = 'uid-pipeline';
const modelVersion = (version: number, stage: ModelVersion['spec']['stage'] = 'Production'): ModelVersion => ({
  apiVersion: API_VERSION, kind: 'ModelVersion',
  metadata: { name: `iris-v${version}`, namespace: NAMESPACE, uid: `uid-v${version}` },
  spec: { modelName: 'iris', version, stage, artifact: { uri: `file:///s/${NAMESPACE}/blobs/sha256/${String(version).repeat(64)}`, digest: `sha256:${String(version).repeat(64)}` } },
});
const agent = { image: 'ferry:0.1.0', storeRoot: 'file:///s', signedUrls: true };
const input = (version = modelVersion(2)) => ({
  pipeline, serving, version, image: TEST_IMAGE, agent,
  model: { name: 'model', uri: version.spec.artifact.uri, digest: version.spec.artifact.digest, url: 'http://artifacts/v1/objects/x?signature=s' },
  grantExpiresAt: '2027-01-01T00:00:00Z',
});

describe('endpoint objects', () => {
  it('are named after the Pipeline as a DNS label', () => {
    assert.equal(endpointName('iris-predict'), 'iris-predict');
    assert.equal(endpointName('team.iris'), 'team-iris');
    assert.equal(endpointName('7up'), 'ep-7up');
    assert.ok(endpointName('x'.repeat(200)).length <= 63);
  });

  it('roll out readiness-gated, never taking a ready replica away first', () => {
    const d = buildDeployment(input(), 2, '2026-12-01T00:00:00Z');
    assert.deepEqual(d.spec?.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } });
    assert.equal(d.spec?.replicas, 2);
    assert.equal(d.spec?.progressDeadlineSeconds, 60);
    const server = d.spec!.template.spec!.containers[0]!;
    assert.equal(server.name, SERVER_CONTAINER);
    assert.equal(server.image, TEST_IMAGE);
    assert.deepEqual(server.readinessProbe?.httpGet, { path: '/healthz', port: 'http' });
    assert.deepEqual(server.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(server.lifecycle?.preStop, { sleep: { seconds: 5 } });
    assert.deepEqual(server.volumeMounts, [{ name: 'ferry', mountPath: '/ferry', readOnly: true }]);
  });

  it('give the server the contract of docs/serving.md after the user\'s env', () => {
    const env = buildDeployment(input(), 1, 'now').spec!.template.spec!.containers[0]!.env!;
    assert.deepEqual(env.map((e) => e.name), ['LOG_LEVEL', 'PORT', 'FERRY_MODEL_PATH', 'FERRY_MODEL_NAME', 'FERRY_MODEL_VERSION', 'FERRY_MODEL_DIGEST', 'FERRY_MODEL_URI', 'FERRY_ENDPOINT']);
    assert.equal(env.find((e) => e.name === 'FERRY_MODEL_PATH')?.value, '/ferry/inputs/model');
    assert.equal(env.find((e) => e.name === 'FERRY_MODEL_VERSION')?.value, '2');
  });

  it('fetch the model with the agent, digest checked, as step Pods do', () => {
    const spec = buildDeployment(input(), 1, 'now').spec!.template.spec!;
    const fetch = spec.initContainers![0]!;
    assert.equal(fetch.name, MODEL_FETCH_CONTAINER);
    assert.deepEqual(fetch.args, ['agent', 'fetch-inputs']);
    const inputs = JSON.parse(fetch.env!.find((e) => e.name === ENV.inputs)!.value!) as Array<{ name: string; digest: string; url: string }>;
    assert.deepEqual(inputs.map((i) => [i.name, i.digest]), [['model', `sha256:${'2'.repeat(64)}`]]);
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.securityContext?.runAsNonRoot, true);
  });

  it('are owned by the Pipeline and selected by the endpoint label', () => {
    const d = buildDeployment(input(), 1, 'now');
    const s = buildService(pipeline, serving);
    for (const o of [d, s]) assert.deepEqual(o.metadata.ownerReferences?.map((r) => [r.kind, r.uid, r.controller]), [['Pipeline', 'uid-pipeline', true]]);
    assert.deepEqual(s.spec?.selector, { 'ferry.dev/endpoint': 'iris-predict' });
    assert.deepEqual(d.spec?.selector.matchLabels, { 'ferry.dev/endpoint': 'iris-predict' });
    assert.equal(d.spec?.template.metadata?.labels?.['ferry.dev/endpoint'], 'iris-predict');
  });
});

describe('servingIntent', () => {
  it('is the same for the same spec and version, whatever the URL', () => {
    assert.equal(servingIntent(serving, modelVersion(2)), servingIntent(structuredClone(serving), modelVersion(2)));
  });
  it('changes with the version, a recreated version, or the serving spec', () => {
    const base = servingIntent(serving, modelVersion(2));
    assert.notEqual(servingIntent(serving, modelVersion(3)), base);
    assert.notEqual(servingIntent(serving, { ...modelVersion(2), metadata: { ...modelVersion(2).metadata, uid: 'other' } }), base);
    assert.notEqual(servingIntent({ ...serving, port: 9090 }, modelVersion(2)), base);
  });
});

describe('serving status', () => {
  const base: ServingStatus = { service: 'iris-predict', url: 'http://iris-predict.ml.svc:8080', model: 'iris' };
  const v = (n: number) => ({ modelVersion: `iris-v${n}`, version: n, digest: `sha256:${String(n).repeat(64)}`, intent: `i${n}` });

  it('opens a period per version and closes the one before', () => {
    const first = becameLive(base, v(1), '2026-12-01T10:00:00Z');
    const second = becameLive({ ...first, rollout: { ...v(2), startedAt: '2026-12-01T10:59:00Z' } }, v(2), '2026-12-01T11:00:00Z');
    assert.equal(second.live?.modelVersion, 'iris-v2');
    assert.equal(second.rollout, undefined);
    assert.deepEqual(second.history?.map((h) => [h.modelVersion, h.from, h.until]), [
      ['iris-v1', '2026-12-01T10:00:00Z', '2026-12-01T11:00:00Z'], ['iris-v2', '2026-12-01T11:00:00Z', undefined],
    ]);
  });

  it('keeps the period when the same version is rolled again (a new spec, a renewed URL)', () => {
    const first = becameLive(base, v(1), '2026-12-01T10:00:00Z');
    const again = becameLive(first, { ...v(1), intent: 'other' }, '2026-12-02T10:00:00Z');
    assert.equal(again.live?.since, '2026-12-01T10:00:00Z');
    assert.equal(again.live?.intent, 'other');
    assert.equal(again.history?.length, 1);
  });

  it('closes the open period when nothing is served any more', () => {
    const stopped = stoppedServing(becameLive(base, v(1), '2026-12-01T10:00:00Z'), '2026-12-01T12:00:00Z');
    assert.equal(stopped.live, undefined);
    assert.deepEqual(stopped.history?.map((h) => h.until), ['2026-12-01T12:00:00Z']);
  });
});

describe('diagnoseRollout', () => {
  const pod = (status: Pod['status']): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'iris-predict-abc' }, status });
  it('names a server that exits, with what it said', () => {
    const message = diagnoseRollout([pod({ containerStatuses: [{
      name: SERVER_CONTAINER, image: 'x', imageID: '', ready: false, restartCount: 3,
      state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 1, message: 'cannot load the model: not a pickle' } },
    }] })], serving);
    assert.equal(message, 'Pod iris-predict-abc: the server container it exited with code 1, 3 restarts: cannot load the model: not a pickle');
  });
  it('names a model fetch that failed', () => {
    const message = diagnoseRollout([pod({ initContainerStatuses: [{ name: MODEL_FETCH_CONTAINER, image: 'x', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 1, message: 'input "model" does not have the expected digest' } } }] })], serving);
    assert.match(message, /fetching the model failed: it exited with code 1: input "model" does not have the expected digest/);
  });
  it('names an image that cannot be pulled', () => {
    const message = diagnoseRollout([pod({ containerStatuses: [{ name: SERVER_CONTAINER, image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'not found' } } }] })], serving);
    assert.match(message, /image cannot be pulled \(ImagePullBackOff: not found\)/);
  });
  it('names a server that runs and is never ready', () => {
    const message = diagnoseRollout([pod({ containerStatuses: [{ name: SERVER_CONTAINER, image: 'x', imageID: '', ready: false, restartCount: 0, state: { running: {} } }] })], serving);
    assert.equal(message, 'Pod iris-predict-abc: the server runs but GET /healthz on port 8080 never answered 2xx');
  });
  it('says when no Pod was made', () => assert.match(diagnoseRollout([], serving), /no Pod of the new version was created/));
});

describe('versionServing (a ModelVersion\'s endpoints)', () => {
  const served = (status: Partial<ServingStatus>): Pipeline => ({ ...pipeline, status: { serving: { service: 'iris-predict', url: 'http://iris-predict.ml.svc:8080', model: 'iris', ...status } } });
  const live = { modelVersion: 'iris-v2', version: 2, digest: 'sha256:2', since: '2026-12-01T11:00:00Z' };

  it('is Live where the version answers', () => {
    const result = versionServing(modelVersion(2), [served({ live, history: [{ modelVersion: 'iris-v2', version: 2, digest: 'sha256:2', from: live.since }] })], 1);
    assert.deepEqual(result.endpoints, [{ name: 'iris-predict', state: 'Live', since: live.since, message: 'answers at http://iris-predict.ml.svc:8080' }]);
    assert.deepEqual(result.servingHistory, [{ endpoint: 'iris-predict', from: live.since }]);
    assert.equal(result.condition?.type, CONDITION_SERVING);
    assert.equal(result.condition?.status, 'True');
  });

  it('is RolloutFailed, naming the version that stays live, for a version that did not start', () => {
    const result = versionServing(modelVersion(3), [served({ live, failed: { modelVersion: 'iris-v3', version: 3, digest: 'sha256:3', reason: 'RolloutFailed', message: 'not ready within 60 s: exited', at: '2026-12-01T12:00:00Z' } })], 1);
    assert.equal(result.condition?.reason, Reasons.RolloutFailed);
    assert.equal(result.condition?.status, 'False');
    assert.match(result.condition!.message, /did not start at endpoint iris-predict since 2026-12-01T12:00:00Z: not ready within 60 s: exited; iris-v2 stays live at iris-predict/);
  });

  it('is Replaced, with its period closed, once another version answers', () => {
    const history = [
      { modelVersion: 'iris-v1', version: 1, digest: 'sha256:1', from: '2026-12-01T10:00:00Z', until: live.since },
      { modelVersion: 'iris-v2', version: 2, digest: 'sha256:2', from: live.since },
    ];
    const result = versionServing(modelVersion(1, 'Archived'), [served({ live, history })], 1);
    assert.deepEqual(result.endpoints?.map((e) => [e.state, e.since, e.message]), [['Replaced', live.since, 'replaced by iris-v2']]);
    assert.deepEqual(result.servingHistory, [{ endpoint: 'iris-predict', from: '2026-12-01T10:00:00Z', until: live.since }]);
  });

  it('keeps periods it recorded earlier that the endpoint\'s bounded history dropped', () => {
    const old = { endpoint: 'iris-predict', from: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z' };
    const version = { ...modelVersion(1), status: { servingHistory: [old] } };
    assert.deepEqual(versionServing(version, [served({ live })], 1).servingHistory, [old]);
  });

  it('says nothing of endpoints serving another model', () => {
    assert.deepEqual(versionServing({ ...modelVersion(2), spec: { ...modelVersion(2).spec, modelName: 'other' } }, [served({ live })], 1), {});
  });
});
