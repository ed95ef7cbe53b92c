// Step Pods that fit real workloads, within the tenancy rules, against the real API server and
// operator: a step with a ConfigMap, a Secret and a memory emptyDir at /dev/shm, a service account
// (its token projected into the step container only), a PriorityClass, the Pipeline's
// imagePullSecrets and podMetadata gets a Pod that carries each, as the API server stores it; a
// PriorityClass outside --allowed-priority-classes fails the run with PlacementNotAllowed, no Pod.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { FakeKubelet } from '../harness/fake-kubelet.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

let cluster: TestCluster;
let namespace: string;
let operator: OperatorProcess;
let kubelet: FakeKubelet;
// PriorityClasses are cluster-wide: named after the namespace, so files running side by side do not meet.
const allowedClass = () => `ferry-test-batch-${namespace}`;
const forbiddenClass = () => `ferry-test-urgent-${namespace}`;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('pod-fields');
  const dockerConfig = Buffer.from(JSON.stringify({ auths: { 'registry.local': { auth: Buffer.from('u:p').toString('base64') } } })).toString('base64');
  await cluster.kubectlOk(['apply', '-f', '-'], [
    { apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', metadata: { name: allowedClass() }, value: 1000, description: 'batch steps' },
    { apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', metadata: { name: forbiddenClass() }, value: 100000, description: 'not for steps' },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'trainer', namespace } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'train-settings', namespace }, data: { 'config.yaml': 'epochs: 3\n' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hub-token', namespace }, stringData: { token: 's3cret' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'registry-creds', namespace }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': dockerConfig } },
  ].map((o) => JSON.stringify(o)).join('\n---\n'));
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace,
    env: { FERRY_ALLOWED_PRIORITY_CLASSES: allowedClass() },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelet = new FakeKubelet(cluster.client, namespace, () => ({ outcome: 'succeed', afterMs: 200 })).start();
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  await cluster?.kubectl(['delete', '--ignore-not-found', 'priorityclass', allowedClass(), forbiddenClass()]);
  await cluster?.cleanup();
});

const condition = (run: PipelineRun) => run.status?.conditions?.find((c) => c.type === 'Succeeded');

describe('step Pod fields', () => {
  it('a step with volumes, a service account, a priority class, pull secrets and podMetadata gets a Pod with each', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({
      name: 'train', namespace,
      imagePullSecrets: [{ name: 'registry-creds' }],
      podMetadata: { labels: { team: 'vision', cost: 'pipeline' }, annotations: { 'example.com/owner': 'vision' } },
      steps: [step('train', {
        volumes: [
          { name: 'settings', configMap: { name: 'train-settings' } },
          { name: 'hub', secret: { secretName: 'hub-token', defaultMode: 0o400 } },
          { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } },
        ],
        volumeMounts: [
          { name: 'settings', mountPath: '/etc/train', readOnly: true },
          { name: 'hub', mountPath: '/var/run/hub', readOnly: true },
          { name: 'shm', mountPath: '/dev/shm' },
        ],
        serviceAccountName: 'trainer',
        automountServiceAccountToken: true,
        priorityClassName: allowedClass(),
      })],
    }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({
      name: 'train-1', namespace, pipeline: 'train', podMetadata: { labels: { cost: 'run-1' }, annotations: { 'example.com/ticket': 'ML-7' } },
    }));
    const pod = await eventually('the step Pod', () => cluster.client.getOrUndefined<Pod>(PODS, namespace, 'train-1-train-1'));
    const spec = pod.spec!;
    const step_ = spec.initContainers?.find((c) => c.name === 'step');
    const agents = [...(spec.initContainers ?? []), ...spec.containers].filter((c) => c.name !== 'step');
    console.log('volumes:', JSON.stringify(spec.volumes));
    console.log('step container mounts:', JSON.stringify(step_?.volumeMounts));
    console.log('agent container mounts:', JSON.stringify(agents.map((c) => ({ [c.name]: c.volumeMounts }))));
    console.log('serviceAccountName:', spec.serviceAccountName, 'automountServiceAccountToken:', spec.automountServiceAccountToken);
    console.log('priorityClassName:', spec.priorityClassName, 'priority (set by the Priority admission plugin):', spec.priority);
    console.log('imagePullSecrets:', JSON.stringify(spec.imagePullSecrets));
    console.log('labels:', JSON.stringify(pod.metadata.labels));
    console.log('annotations:', JSON.stringify(pod.metadata.annotations));

    const volume = (name: string) => spec.volumes?.find((v) => v.name === name);
    assert.deepEqual(volume('settings')?.configMap?.name, 'train-settings');
    assert.deepEqual([volume('hub')?.secret?.secretName, volume('hub')?.secret?.defaultMode], ['hub-token', 0o400]);
    assert.deepEqual(volume('shm')?.emptyDir, { medium: 'Memory', sizeLimit: '1Gi' });
    assert.ok(volume('ferry-service-account-token')?.projected?.sources?.some((s) => s.serviceAccountToken?.path === 'token'));
    assert.deepEqual(step_?.volumeMounts?.map((m) => m.mountPath), [
      '/ferry', '/etc/train', '/var/run/hub', '/dev/shm', '/var/run/secrets/kubernetes.io/serviceaccount',
    ]);
    for (const c of agents) assert.deepEqual(c.volumeMounts?.map((m) => m.mountPath), ['/ferry'], `${c.name} mounts only /ferry`);
    assert.equal(spec.serviceAccountName, 'trainer');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.priorityClassName, allowedClass());
    assert.equal(spec.priority, 1000, 'the API server resolved the class');
    assert.deepEqual(spec.imagePullSecrets, [{ name: 'registry-creds' }]);
    assert.equal(pod.metadata.labels?.team, 'vision');
    assert.equal(pod.metadata.labels?.cost, 'run-1', "the run's label wins over the pipeline's");
    assert.equal(pod.metadata.labels?.['ferry.dev/step'], 'train');
    assert.equal(pod.metadata.labels?.['app.kubernetes.io/managed-by'], 'ferry');
    assert.equal(pod.metadata.annotations?.['example.com/owner'], 'vision');
    assert.equal(pod.metadata.annotations?.['example.com/ticket'], 'ML-7');
    assert.equal(pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'], 'step');

    // The real kubectl picks the step (an init container) for `kubectl logs POD` by that annotation:
    // its request names container=step (no kubelet runs here, so the API server has no log to send).
    const logs = await cluster.kubectl(['logs', '-n', namespace, 'train-1-train-1', '-v=6']);
    const request = /\/pods\/train-1-train-1\/log\?[^\s"]*/.exec(logs.stderr)?.[0];
    console.log('kubectl logs asked for:', request, '; kubectl said:', logs.stderr.trim().split('\n').at(-1));
    assert.match(request ?? '', /[?&]container=step(&|$)/);

    const run = await waitForRun(cluster, namespace, 'train-1', { timeoutMs: 60_000, operatorLogs: operator.logs });
    assert.equal(run.status?.phase, 'Succeeded');
  });

  it('a priority class outside --allowed-priority-classes fails the run with PlacementNotAllowed, and no Pod', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'urgent', namespace, steps: [step('rush', { priorityClassName: forbiddenClass() })] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'urgent-1', namespace, pipeline: 'urgent' }));
    const run = await waitForRun(cluster, namespace, 'urgent-1', { timeoutMs: 60_000, operatorLogs: operator.logs });
    console.log('refused run:', run.status?.phase, condition(run)?.reason, condition(run)?.message);
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(condition(run)?.reason, 'PlacementNotAllowed');
    assert.equal(condition(run)?.message, `step "rush": priorityClassName "${forbiddenClass()}" is not allowed here (allowed: ${allowedClass()})`);
    assert.deepEqual((await cluster.client.list<Pod>(PODS, namespace, 'ferry.dev/run=urgent-1')).items, []);
  });
});
