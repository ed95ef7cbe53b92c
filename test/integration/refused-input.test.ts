// Input the API server accepts but a run cannot carry, against the real API server and operator:
// a 1 MiB parameter value fails the run with InvalidParameters (no Pod, a status that says why),
// and a status the API server refuses (here a ValidatingAdmissionPolicy on pipelineruns/status
// plays etcd's size limit) is replaced by a minimal Failed status instead of failing every pass.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { ApiError } from '../../operator/kube/errors.ts';
import { PIPELINE_RUNS, PIPELINES, PODS } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';

let cluster: TestCluster;
let namespace: string;
let operator: OperatorProcess;
const policyName = () => `ferry-test-refuse-status-${namespace}`;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('refused');
  operator = startOperator({ kubeconfigPath: cluster.kubeconfigPath, namespaces: [namespace], leaseName: 'ferry', leaseNamespace: namespace });
  await operator.waitForLog((l) => l.msg === 'controller started');
});

after(async () => {
  await operator?.stop();
  await cluster?.kubectl(['delete', '--ignore-not-found', 'validatingadmissionpolicybinding,validatingadmissionpolicy', policyName()]);
  await cluster?.cleanup();
});

describe('input a run cannot carry', () => {
  it('a 1 MiB parameter value fails the run with InvalidParameters before any Pod, and its status is written', async () => {
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'echo', namespace, parameters: [{ name: 'text', type: 'string' }], steps: [step('say', { parameters: ['text'] })] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'huge', namespace, pipeline: 'echo', parameters: [{ name: 'text', value: 'x'.repeat(1024 * 1024) }] }));
    const run = await waitForRun(cluster, namespace, 'huge', { timeoutMs: 60_000, operatorLogs: operator.logs });
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(condition?.reason, 'InvalidParameters');
    assert.equal(condition?.message, `parameter "text" (string): the value is 1048576 characters, more than the 4096 a run's status can hold`);
    assert.deepEqual((await cluster.client.list(PODS, namespace)).items, []);
  });

  it('a status the API server refuses becomes a minimal Failed status that says why, and the run stops', async () => {
    // Refuses any status of this namespace's runs that lists a step named "refused".
    await cluster.kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: policyName() },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: ['ferry.dev'], apiVersions: ['*'], operations: ['UPDATE'], resources: ['pipelineruns/status'] }] },
        validations: [{ expression: "!has(object.status.steps) || !object.status.steps.exists(s, s.name == 'refused')", message: 'status too large for this test', reason: 'Invalid' }],
      },
    }) + '\n---\n' + JSON.stringify({
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: policyName() },
      spec: { policyName: policyName(), validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } } } },
    }));
    // A policy is enforced a moment after it is created: wait until it refuses a status write.
    const probe = await cluster.client.create<PipelineRun>(PIPELINE_RUNS, namespace, pipelineRun({ name: 'policy-probe', namespace, pipeline: 'absent' }));
    await eventually('the policy refuses a status with a step named refused', async () => {
      const current = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, namespace, probe.metadata.name);
      try {
        await cluster.client.replaceStatus(PIPELINE_RUNS, { ...current, status: { ...current.status, steps: [{ name: 'refused', phase: 'Pending' }] } });
        return undefined;
      } catch (err) {
        return err instanceof ApiError && err.status === 422 ? true : undefined;
      }
    }, 30_000, 250);
    await cluster.client.create(PIPELINES, namespace, pipeline({ name: 'refused', namespace, steps: [step('refused')] }));
    await cluster.client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: 'refused-1', namespace, pipeline: 'refused' }));
    const run = await waitForRun(cluster, namespace, 'refused-1', { timeoutMs: 60_000, operatorLogs: operator.logs });
    const condition = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    assert.equal(run.status?.phase, 'Failed');
    assert.equal(condition?.reason, 'StatusRefused');
    assert.match(condition?.message ?? '', /^the API server refused the run's status \(.*status too large for this test.*\); the run is stopped$/);
    assert.equal(run.status?.steps, undefined, 'the minimal status lists no steps');
    assert.ok(run.status?.configuration, 'the frozen configuration stays recorded');
  });
});
