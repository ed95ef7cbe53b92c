// Endpoints against the real API server, a real registry and real PostgreSQL: what the operator
// creates for a Pipeline's `serving`, how it follows promotions, goes back when a version is
// not ready in time, scales to zero when nothing is servable, records the serving periods, and
// refuses bad input (no model, an unresolvable image, another tenant's artifact, a name taken)
// with a condition and nothing created. There is no kube-controller-manager here: the test
// reports Deployment status as the Deployment controller would (test/e2e/serving.test.ts runs
// real Pods on a real kubelet).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Condition } from '../../operator/api/v1alpha1/common.ts';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import type { ServingSpec } from '../../operator/api/v1alpha1/serving.ts';
import type { Deployment, Service } from '../../operator/controllers/serving/endpoint-objects.ts';
import { DEPLOYMENTS, MODEL_VERSIONS, PIPELINES, SERVICES } from '../../operator/kube/resources.ts';
import { PostgresMetadataStore } from '../../operator/metadata/postgres-store.ts';
import { pipeline, step } from '../builders.ts';
import { connect, eventually, type TestCluster } from '../harness/cluster.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { startPostgres, type Postgres } from '../harness/postgres.ts';
import { buildAndPushImage, startRegistry, type TestRegistry } from '../harness/registry.ts';

const log = (line: string): void => { process.stderr.write(`[serving] ${line}\n`); };
const AGENT_IMAGE = 'ferry:serving-test';

let cluster: TestCluster;
let namespace: string;
let registry: TestRegistry;
let serverImage: string;
let postgres: Postgres;
let metadata: PostgresMetadataStore;
let storeDir: string;
let operator: OperatorProcess;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('serving');
  registry = await startRegistry({ log });
  const digest = await buildAndPushImage(registry.host, 'ferry/iris-server', '1.0', 'a server\n', { log });
  serverImage = `${registry.host}/ferry/iris-server:1.0`;
  assert.match(digest, /^sha256:/);
  postgres = await startPostgres();
  const databaseUrl = postgres.url(await postgres.createDatabase('serving'));
  metadata = new PostgresMetadataStore(databaseUrl);
  storeDir = await mkdtemp(join(tmpdir(), 'ferry-serving-store-'));
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_ARTIFACT_STORE: `file://${storeDir}`, FERRY_AGENT_IMAGE: AGENT_IMAGE, FERRY_DATABASE_URL: databaseUrl, FERRY_INSECURE_REGISTRIES: registry.host },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
}, { timeout: 300_000 });

after(async () => {
  await operator?.stop();
  await metadata?.close();
  await postgres?.stop();
  await registry?.stop();
  await cluster?.cleanup();
  await rm(storeDir, { recursive: true, force: true });
});

const servingOf = (extra: Partial<ServingSpec> = {}): ServingSpec => ({
  model: { name: 'iris', stage: 'Production' }, image: serverImage, command: ['serve'], port: 8080, readinessPath: '/healthz',
  replicas: 1, rolloutTimeoutSeconds: 10, ...extra,
});

async function applyPipeline(name: string, serving: ServingSpec): Promise<Pipeline> {
  return cluster.client.create(PIPELINES, namespace, { ...pipeline({ name, namespace, steps: [step('predict')] }), spec: { steps: [step('predict')], serving } });
}

async function registerVersion(model: string, version: number, stage: ModelVersion['spec']['stage'], uriNamespace = namespace): Promise<ModelVersion> {
  const digest = `sha256:${String(version).repeat(64)}`;
  return cluster.client.create<ModelVersion>(MODEL_VERSIONS, namespace, {
    apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion',
    metadata: { name: `${model}-v${version}`, namespace },
    spec: { modelName: model, version, stage, artifact: { uri: `file://${storeDir}/${uriNamespace}/blobs/sha256/${digest.slice(7)}`, digest } },
  });
}

const setStage = (name: string, stage: string) => cluster.client.mergePatch(MODEL_VERSIONS, namespace, name, { spec: { stage } });
const getPipeline = (name: string) => cluster.client.get<Pipeline>(PIPELINES, namespace, name);
const servingCondition = (p: Pipeline | ModelVersion): Condition | undefined => p.status?.conditions?.find((c) => c.type === 'Serving');

async function waitForServing(name: string, reason: string, timeoutMs = 30_000): Promise<Pipeline> {
  return eventually(`Pipeline ${name} Serving=${reason}`, async () => {
    const p = await getPipeline(name);
    return servingCondition(p)?.reason === reason ? p : undefined;
  }, timeoutMs);
}

/** What the Deployment controller reports once every replica runs the current template and is ready. */
async function reportRolledOut(name: string): Promise<void> {
  const d = await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, name);
  const replicas = d.spec?.replicas ?? 0;
  await cluster.client.replaceStatus(DEPLOYMENTS, {
    ...d, status: { observedGeneration: d.metadata.generation ?? 0, replicas, updatedReplicas: replicas, readyReplicas: replicas, availableReplicas: replicas },
  });
}

describe('an endpoint', () => {
  it('with no servable version is a condition, and nothing is created', async () => {
    await applyPipeline('iris-serve', servingOf());
    const p = await waitForServing('iris-serve', 'NoServableVersion');
    assert.equal(servingCondition(p)?.status, 'False');
    assert.match(servingCondition(p)!.message, /model "iris" in stage Production does not exist \(no versions are registered\); nothing is served/);
    assert.equal(await cluster.client.getOrUndefined(DEPLOYMENTS, namespace, 'iris-serve'), undefined);
    assert.equal(await cluster.client.getOrUndefined(SERVICES, namespace, 'iris-serve'), undefined);
  });

  it('gets a Deployment and a Service for the Production version, with the image pinned', async () => {
    await registerVersion('iris', 1, 'Production');
    const p = await waitForServing('iris-serve', 'RollingOut');
    assert.equal(p.status?.serving?.rollout?.modelVersion, 'iris-v1');
    const d = await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve');
    const template = d.spec!.template;
    assert.match(template.spec!.containers[0]!.image!, new RegExp(`^${registry.host}/ferry/iris-server@sha256:[a-f0-9]{64}$`));
    assert.equal(template.metadata?.annotations?.['ferry.dev/model-version'], 'iris-v1');
    assert.equal(d.metadata.ownerReferences?.[0]?.uid, p.metadata.uid);
    const s = await cluster.client.get<Service>(SERVICES, namespace, 'iris-serve');
    assert.deepEqual(s.spec?.ports?.map((port) => [port.port, port.targetPort]), [[8080, 'http']]);
  });

  it('is Live once rolled out, on the Pipeline, on the ModelVersion and in PostgreSQL', async () => {
    await reportRolledOut('iris-serve');
    const p = await waitForServing('iris-serve', 'Live');
    assert.equal(p.status?.serving?.live?.modelVersion, 'iris-v1');
    assert.equal(p.status?.serving?.url, `http://iris-serve.${namespace}.svc:8080`);
    const v1 = await eventually('iris-v1 Serving=Live', async () => {
      const v = await cluster.client.get<ModelVersion>(MODEL_VERSIONS, namespace, 'iris-v1');
      return servingCondition(v)?.reason === 'Live' ? v : undefined;
    });
    assert.deepEqual(v1.status?.endpoints?.map((e) => [e.name, e.state]), [['iris-serve', 'Live']]);
    const since = p.status!.serving!.live!.since;
    const period = await eventually('the serving period in PostgreSQL', () => metadata.servedAt(namespace, 'iris-serve', since));
    assert.deepEqual([period.model, period.version, period.until], ['iris', 1, undefined]);
  });

  it('rolls to a promoted version, and goes back when it is not ready in time', async () => {
    const live = (await getPipeline('iris-serve')).status!.serving!.live!;
    await registerVersion('iris', 2, 'Production');
    const rolling = await waitForServing('iris-serve', 'RollingOut');
    assert.equal(rolling.status?.serving?.rollout?.modelVersion, 'iris-v2');
    assert.equal(servingCondition(rolling)?.status, 'True', 'iris-v1 answers meanwhile');
    const d = await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve');
    assert.equal(d.spec?.template.metadata?.annotations?.['ferry.dev/model-version'], 'iris-v2');
    // Never reported ready: after rolloutTimeoutSeconds (10 s) the endpoint goes back to iris-v1.
    const failed = await waitForServing('iris-serve', 'RolloutFailed', 60_000);
    assert.equal(servingCondition(failed)?.status, 'True');
    assert.match(servingCondition(failed)!.message, /^iris-v2 cannot be served: not ready within 10 s: no Pod of the new version was created .*; iris-v1 \(sha256:111111111111…\) stays live$/);
    assert.equal(failed.status?.serving?.live?.modelVersion, 'iris-v1');
    assert.equal(failed.status?.serving?.live?.since, live.since);
    const restored = await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve');
    assert.equal(restored.spec?.template.metadata?.annotations?.['ferry.dev/model-version'], 'iris-v1');
    const v2 = await eventually('iris-v2 Serving=RolloutFailed', async () => {
      const v = await cluster.client.get<ModelVersion>(MODEL_VERSIONS, namespace, 'iris-v2');
      return servingCondition(v)?.reason === 'RolloutFailed' ? v : undefined;
    });
    assert.match(servingCondition(v2)!.message, /did not start at endpoint iris-serve .*iris-v1 stays live at iris-serve/);
  });

  it('is not tried again for the same version and spec; a new spec tries again', async () => {
    const before = (await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve')).metadata.generation;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal((await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve')).metadata.generation, before, 'no new rollout of iris-v2');
    await cluster.client.mergePatch(PIPELINES, namespace, 'iris-serve', { spec: { serving: { rolloutTimeoutSeconds: 30 } } });
    await waitForServing('iris-serve', 'RollingOut');
    await reportRolledOut('iris-serve');
    const p = await waitForServing('iris-serve', 'Live');
    assert.equal(p.status?.serving?.live?.modelVersion, 'iris-v2');
    assert.deepEqual(p.status?.serving?.history?.map((h) => [h.modelVersion, h.until !== undefined]), [['iris-v1', true], ['iris-v2', false]]);
    const v1at = p.status!.serving!.history![0]!.from;
    assert.equal((await metadata.servedAt(namespace, 'iris-serve', v1at))?.version, 1);
    assert.equal((await eventually('iris-v2 in PostgreSQL', () => metadata.servedAt(namespace, 'iris-serve', p.status!.serving!.live!.since)))?.version, 2);
  });

  it('scales to zero when the served version is archived without a successor', async () => {
    await setStage('iris-v2', 'Archived');
    const p = await waitForServing('iris-serve', 'NoServableVersion');
    assert.match(servingCondition(p)!.message, /nothing is served \(scaled to zero\); it served iris-v2 until/);
    assert.equal(p.status?.serving?.live, undefined);
    assert.equal((await cluster.client.get<Deployment>(DEPLOYMENTS, namespace, 'iris-serve')).spec?.replicas, 0);
    const until = p.status!.serving!.history!.at(-1)!.until!;
    let periods: unknown;
    await eventually('the period closed', async () => {
      const history = await metadata.servingHistory(namespace, 'iris-serve');
      periods = { history, until };
      return history.at(-1)?.until === until ? true : undefined;
    }).catch((err: unknown) => { throw new Error(`${String(err)}: ${JSON.stringify(periods)}`); });
    assert.equal(await metadata.servedAt(namespace, 'iris-serve', new Date(Date.parse(until) + 1000).toISOString()), undefined);
  });
});

describe('bad input', () => {
  it('an image that does not exist: ImageResolutionFailed, nothing created', async () => {
    await registerVersion('rose', 1, 'Production');
    await applyPipeline('rose-serve', servingOf({ model: { name: 'rose', stage: 'Production' }, image: `${registry.host}/ferry/no-such-server:1.0` }));
    const p = await waitForServing('rose-serve', 'ImageResolutionFailed');
    assert.equal(servingCondition(p)?.status, 'False');
    assert.match(servingCondition(p)!.message, /rose-v1 cannot be served: the server image: .*no-such-server.*; nothing is served/);
    assert.equal(await cluster.client.getOrUndefined(DEPLOYMENTS, namespace, 'rose-serve'), undefined);
    assert.equal(await cluster.client.getOrUndefined(SERVICES, namespace, 'rose-serve'), undefined);
  });

  it('a version whose artifact is another namespace\'s: CrossNamespaceReference, nothing created', async () => {
    await registerVersion('tulip', 1, 'Production', 'someone-else');
    await applyPipeline('tulip-serve', servingOf({ model: { name: 'tulip', stage: 'Production' } }));
    const p = await waitForServing('tulip-serve', 'CrossNamespaceReference');
    assert.match(servingCondition(p)!.message, /^tulip-v1 cannot be served: the artifact of tulip-v1 does not name an object of namespace "serving-[a-f0-9]+" in the artifact store; nothing is served$/);
    assert.equal(await cluster.client.getOrUndefined(DEPLOYMENTS, namespace, 'tulip-serve'), undefined);
  });

  it('a Service of that name that is not the endpoint\'s: EndpointConflict, left alone', async () => {
    await registerVersion('lily', 1, 'Production');
    await cluster.client.create(SERVICES, namespace, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'lily-serve', namespace, labels: { 'app.kubernetes.io/managed-by': 'ferry', 'ferry.dev/endpoint': 'lily-serve' } }, spec: { ports: [{ port: 80 }] } });
    await applyPipeline('lily-serve', servingOf({ model: { name: 'lily', stage: 'Production' } }));
    const p = await waitForServing('lily-serve', 'EndpointConflict');
    assert.match(servingCondition(p)!.message, /a Service named lily-serve exists in .* and is not this Pipeline's endpoint/);
    assert.equal(await cluster.client.getOrUndefined(DEPLOYMENTS, namespace, 'lily-serve'), undefined);
    assert.equal((await cluster.client.get<Service>(SERVICES, namespace, 'lily-serve')).spec?.ports?.[0]?.port, 80);
  });

  it('env that the serving contract owns: the Pipeline is not Ready (InvalidServing)', async () => {
    await applyPipeline('bad-env', servingOf({ env: [{ name: 'PORT', value: '1' }] }));
    const p = await eventually('bad-env Ready=False', async () => {
      const got = await getPipeline('bad-env');
      return got.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'False') ? got : undefined;
    });
    assert.equal(p.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'InvalidServing');
    assert.equal(await cluster.client.getOrUndefined(DEPLOYMENTS, namespace, 'bad-env'), undefined);
  });
});
