// The chart's RBAC is enough, and no more. The chart's ServiceAccount, Roles and bindings
// (helm template) are applied to the real API server; the real operator runs with a token
// for that ServiceAccount (TokenRequest API, not the admin) through full runs, including a
// model registration and promotion; the same token is refused what the operator must never do.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dump } from 'js-yaml';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import { MODEL_VERSIONS, PIPELINE_RUNS, PIPELINES, SECRETS } from '../../operator/kube/resources.ts';
import { diamond, pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet } from '../harness/fake-kubelet.ts';
import { Helm, ensureHelm, parseManifests, type KubeManifest } from '../harness/helm.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';
import { kubectlWith, serviceAccountKubeconfig as serviceAccountKubeconfigIn } from '../harness/service-account.ts';

const RBAC_KINDS = new Set(['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding']);
const AGENT_IMAGE = 'ferry:rbac-test';

let cluster: TestCluster;
let helm: Helm;
let workDir: string;
/** Cluster-scoped objects this file created, deleted at the end. */
const clusterScoped: string[] = [];

before(async () => {
  cluster = connect();
  helm = new Helm(await ensureHelm());
  workDir = await mkdtemp(join(tmpdir(), 'ferry-rbac-'));
});

after(async () => {
  if (clusterScoped.length > 0) await cluster?.kubectl(['delete', '--ignore-not-found', ...clusterScoped]);
  await cluster?.cleanup();
  await rm(workDir, { recursive: true, force: true });
});

/** Renders the chart and applies only its identity and RBAC objects (the operator runs as a local process). */
async function installRbac(release: string, namespace: string, values: Record<string, unknown>): Promise<KubeManifest[]> {
  const objects = parseManifests(await helm.template({ release, namespace, values })).filter((o) => RBAC_KINDS.has(o.kind));
  await cluster.kubectlOk(['apply', '-f', '-'], objects.map((o) => dump(o)).join('---\n'));
  for (const o of objects) if (o.kind.startsWith('Cluster')) clusterScoped.push(`${o.kind.toLowerCase()}/${o.metadata.name}`);
  return objects;
}

/** A kubeconfig for a ServiceAccount of the test cluster (test/harness/service-account.ts). */
const serviceAccountKubeconfig = (namespace: string, name: string) => serviceAccountKubeconfigIn(cluster, workDir, namespace, name);

/** kubectl as the ServiceAccount. */
const kubectlAs = (kubeconfig: string) => kubectlWith(kubeconfig, workDir);

/** `kubectl auth can-i` as the ServiceAccount: true for yes. */
async function can(kubeconfig: string, args: string[]): Promise<boolean> {
  const result = await kubectlAs(kubeconfig)(['auth', 'can-i', ...args]);
  assert.ok(result.stdout.trim() === 'yes' || result.stdout.trim() === 'no', `auth can-i ${args.join(' ')}: ${result.stdout} ${result.stderr}`);
  return result.stdout.trim() === 'yes';
}

describe('namespace-scoped install: the operator works with exactly the chart permissions', () => {
  let operatorNs: string;
  let teamNs: string;
  let modelsNs: string;
  let fullname: string;
  let kubeconfig: string;
  let operator: OperatorProcess;
  let fakeKubelet: FakeKubelet;
  let processKubelet: ProcessKubelet;

  before(async () => {
    operatorNs = await cluster.createNamespace('ferry-op');
    teamNs = await cluster.createNamespace('ferry-team');
    modelsNs = await cluster.createNamespace('ferry-models');
    const release = `rbac-${randomBytes(3).toString('hex')}`;
    fullname = `${release}-ferry`;
    // The promotion guard has its own test (promotion-guard.test.ts); here only the operator's RBAC.
    const objects = await installRbac(release, operatorNs, { watchNamespaces: [teamNs, modelsNs], rbac: { aggregateToDefaultRoles: false }, promotion: { guard: { enabled: false } } });
    assert.deepEqual(objects.filter((o) => o.kind.startsWith('Cluster')), [], 'namespace-scoped mode grants nothing cluster-wide');
    kubeconfig = await serviceAccountKubeconfig(operatorNs, fullname);
    // Read by name when runs of a Pipeline that names it are frozen.
    await cluster.client.create(SECRETS, teamNs, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'regcred', namespace: teamNs }, type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { 'registry.local': { auth: Buffer.from('ml:secret').toString('base64') } } })).toString('base64') },
    } as never);
    operator = startOperator({
      kubeconfigPath: kubeconfig,
      namespaces: [teamNs, modelsNs],
      // The chart's Lease, in the release namespace: the Role renews it by this name only.
      leaseName: fullname,
      leaseNamespace: operatorNs,
      env: { FERRY_AGENT_IMAGE: AGENT_IMAGE },
    });
    await operator.waitForLog((l) => l.msg === 'controller started', 60_000);
    fakeKubelet = new FakeKubelet(cluster.client, teamNs, () => ({ outcome: 'succeed', afterMs: 200 })).start();
    processKubelet = new ProcessKubelet(cluster.client, modelsNs, { agentImage: AGENT_IMAGE }).start();
  });

  after(async () => {
    await fakeKubelet?.stop();
    await processKubelet?.stop();
    await operator?.stop();
  });

  it('runs a DAG whose Pipeline names an imagePullSecret to Succeeded', async () => {
    await cluster.client.create(PIPELINES, teamNs, pipeline({ name: 'diamond', namespace: teamNs, steps: diamond(), imagePullSecrets: [{ name: 'regcred' }] }));
    await cluster.client.create(PIPELINE_RUNS, teamNs, pipelineRun({ name: 'diamond-1', namespace: teamNs, pipeline: 'diamond' }));
    const run = await waitForRun(cluster, teamNs, 'diamond-1', { operatorLogs: operator.logs });
    assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
    assert.equal(run.status?.progress, '4/4');
  });

  it('registers a ModelVersion from a run and promotes it to Production', async () => {
    const sh = (script: string) => ['sh', '-c', script];
    await cluster.client.create(PIPELINES, modelsNs, pipeline({ name: 'iris-train', namespace: modelsNs,
      promotion: [{ model: 'iris', stage: 'Production', when: [{ metric: 'accuracy', operator: '>=', value: 0.9 }] }],
      steps: [step('train', {
        command: sh('echo weights > /ferry/outputs/model && echo \'{"accuracy": 0.95}\' > /ferry/outputs/metrics.json'),
        outputs: [{ name: 'model', type: 'model', register: { name: 'iris' } }],
      })],
    }));
    await cluster.client.create(PIPELINE_RUNS, modelsNs, pipelineRun({ name: 'iris-train-1', namespace: modelsNs, pipeline: 'iris-train' }));
    const run = await waitForRun(cluster, modelsNs, 'iris-train-1', { timeoutMs: 90_000, operatorLogs: operator.logs });
    assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
    const version = await eventually('iris-v1 in Production', async () => {
      const v = await cluster.client.get<ModelVersion>(MODEL_VERSIONS, modelsNs, 'iris-v1');
      return v.status?.stage === 'Production' ? v : undefined;
    });
    assert.equal(version.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  });

  it('never met a 403 on the way', () => {
    const denied = operator.logs.filter((l) => /forbidden|\b403\b/i.test(JSON.stringify(l)));
    assert.deepEqual(denied, []);
  });

  it('served its metrics with the runs counted', async () => {
    const port = operator.logs.find((l) => l.msg === 'operator starting')?.httpPort;
    const text = await (await fetch(`http://127.0.0.1:${String(port)}/metrics`)).text();
    const value = (pattern: RegExp) => Number(text.match(pattern)?.[1] ?? NaN);
    assert.ok(value(/^ferry_reconcile_total\{controller="pipelinerun",result="success"\} (\d+)/m) > 0, 'reconciles counted');
    assert.ok(value(/^ferry_pipelineruns_finished_total\{phase="Succeeded"\} (\d+)/m) >= 2, 'both runs counted');
    assert.ok(value(/^ferry_step_pods_created_total (\d+)/m) >= 5, 'step Pods counted');
    assert.equal(value(/^ferry_leader (\d+)/m), 1, 'leads through the chart Lease');
  });

  it('is refused what the operator must never do', async () => {
    const secret = `rbac-probe-${randomBytes(3).toString('hex')}`;
    await cluster.kubectlOk(['-n', 'kube-system', 'create', 'secret', 'generic', secret, '--from-literal=k=v']);
    try {
      const kubectl = kubectlAs(kubeconfig);
      const read = await kubectl(['-n', 'kube-system', 'get', 'secret', secret]);
      assert.notEqual(read.code, 0);
      assert.match(read.stderr, /Forbidden.*cannot get resource "secrets" in API group "" in the namespace "kube-system"/);
      const deleteNs = await kubectl(['delete', 'namespace', teamNs, '--wait=false']);
      assert.match(deleteNs.stderr, /Forbidden.*cannot delete resource "namespaces"/);
      const listAll = await kubectl(['get', 'pipelineruns', '--all-namespaces']);
      assert.match(listAll.stderr, /Forbidden.*cannot list resource "pipelineruns" in API group "ferry.dev" at the cluster scope/);
    } finally {
      await cluster.kubectl(['-n', 'kube-system', 'delete', 'secret', secret]);
    }
    assert.equal(await can(kubeconfig, ['list', 'secrets', '--all-namespaces']), false);
    assert.equal(await can(kubeconfig, ['list', 'secrets', '-n', teamNs]), false, 'Secrets are read by name, never listed');
    assert.equal(await can(kubeconfig, ['watch', 'secrets', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['get', 'secrets', '-n', teamNs]), true, 'imagePullSecrets by name');
    assert.equal(await can(kubeconfig, ['create', 'pods', '-n', operatorNs]), false, 'no step Pods outside the watched namespaces');
    assert.equal(await can(kubeconfig, ['create', 'pods', '-n', teamNs]), true);
    assert.equal(await can(kubeconfig, ['update', 'pods', '-n', teamNs]), false, 'Pods are created and deleted, never changed');
    assert.equal(await can(kubeconfig, ['create', 'pods', '--subresource=exec', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['update', 'pipelineruns', '-n', teamNs]), false, 'the spec is the user\'s; only status is written');
    assert.equal(await can(kubeconfig, ['create', 'pipelineruns', '-n', teamNs]), true, 'schedules start runs');
    assert.equal(await can(kubeconfig, ['delete', 'pipelineruns', '-n', teamNs]), false, 'nothing deletes a run yet');
    assert.equal(await can(kubeconfig, ['update', 'pipelineruns', '--subresource=status', '-n', teamNs]), true);
    // Only the verbs the operator uses (the runs above needed no more): status is replaced whole,
    // ModelVersions are created and merge-patched, never updated whole.
    assert.equal(await can(kubeconfig, ['patch', 'pipelineruns', '--subresource=status', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['get', 'pipelineruns', '--subresource=status', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['update', 'modelversions', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['patch', 'modelversions', '-n', teamNs]), true);
    assert.equal(await can(kubeconfig, ['delete', 'pipelines', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['update', 'leases/some-other-lease', '-n', operatorNs]), false, 'only the chart Lease');
    assert.equal(await can(kubeconfig, ['update', 'customresourcedefinitions']), false);
    // Endpoints (serving.enabled, the default): Deployments and Services, and only list on ReplicaSets (a rollback reads one).
    assert.equal(await can(kubeconfig, ['create', 'deployments', '-n', teamNs]), true);
    assert.equal(await can(kubeconfig, ['update', 'replicasets', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['create', 'statefulsets', '-n', teamNs]), false);
    assert.equal(await can(kubeconfig, ['get', 'configmaps', '-n', teamNs]), false);
  });
});

describe('cluster-wide install: what the token may and may not do', () => {
  let kubeconfig: string;
  let otherNs: string;

  before(async () => {
    const namespace = await cluster.createNamespace('ferry-cw');
    otherNs = await cluster.createNamespace('ferry-any');
    const release = `rbac-${randomBytes(3).toString('hex')}`;
    const objects = await installRbac(release, namespace, { rbac: { aggregateToDefaultRoles: false }, promotion: { guard: { enabled: false } } });
    assert.deepEqual(objects.filter((o) => o.kind.startsWith('Cluster')).map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding']);
    kubeconfig = await serviceAccountKubeconfig(namespace, `${release}-ferry`);
  });

  it('watches Ferry objects and manages step Pods in every namespace', async () => {
    assert.equal(await can(kubeconfig, ['watch', 'pipelineruns', '--all-namespaces']), true);
    assert.equal(await can(kubeconfig, ['update', 'pipelineruns', '--subresource=status', '-n', otherNs]), true);
    assert.equal(await can(kubeconfig, ['create', 'modelversions', '-n', otherNs]), true);
    assert.equal(await can(kubeconfig, ['create', 'pods', '-n', otherNs]), true);
    assert.equal(await can(kubeconfig, ['create', 'events.events.k8s.io', '-n', otherNs]), true);
  });

  it('cannot list, watch or change Secrets, touch namespaces, or reach beyond its kinds', async () => {
    assert.equal(await can(kubeconfig, ['list', 'secrets', '--all-namespaces']), false);
    assert.equal(await can(kubeconfig, ['watch', 'secrets', '--all-namespaces']), false);
    assert.equal(await can(kubeconfig, ['create', 'secrets', '-n', otherNs]), false);
    assert.equal(await can(kubeconfig, ['delete', 'namespaces']), false);
    assert.equal(await can(kubeconfig, ['update', 'customresourcedefinitions']), false);
    assert.equal(await can(kubeconfig, ['create', 'clusterrolebindings']), false);
    assert.equal(await can(kubeconfig, ['get', 'configmaps', '-n', otherNs]), false);
    assert.equal(await can(kubeconfig, ['create', 'pods', '--subresource=exec', '-n', otherNs]), false);
    // NOTE: `get` on Secrets by name is cluster-wide in this mode (rbac.readImagePullSecrets,
    // charts/ferry/README.md says why); namespace-scoped mode or the value turned off removes it.
    assert.equal(await can(kubeconfig, ['get', 'secrets', '-n', otherNs]), true);
  });
});
