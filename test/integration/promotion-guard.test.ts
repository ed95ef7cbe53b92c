// The chart's promotion guard on the real API server: its ValidatingAdmissionPolicy, binding
// and promoter ClusterRole (helm template, namespace-scoped to one team namespace) with the
// chart's RBAC; the real operator runs as the chart's ServiceAccount, and users are
// ServiceAccounts with TokenRequest tokens (real authentication, real RBAC, no impersonation).
// Who may move a version to Production, what the stage history names, and that the operator's
// own promotions and archiving still pass.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dump } from 'js-yaml';
import type { ModelVersion } from '../../operator/api/v1alpha1/model-version.ts';
import { MODEL_VERSIONS, PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import type { KubectlResult } from '../harness/api-server.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { Helm, ensureHelm, parseManifests } from '../harness/helm.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';
import { kubectlWith as kubectlAs, serviceAccountKubeconfig as serviceAccountKubeconfigIn } from '../harness/service-account.ts';

const APPLIED_KINDS = new Set(['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
const AGENT_IMAGE = 'ferry:promotion-guard-test';
const STAGE_BY = 'ferry.dev/stage-changed-by';
const sh = (script: string) => ['sh', '-c', script];

let cluster: TestCluster;
let workDir: string;
let operatorNs: string;
let teamNs: string;
let fullname: string;
let operator: OperatorProcess;
let kubelet: ProcessKubelet;
/** Users: ServiceAccounts in the team namespace, each with its own kubeconfig. */
const users: Record<'alice' | 'bob', { name: string; kubectl: (args: string[], input?: string) => Promise<KubectlResult> }> = {} as never;
const clusterScoped: string[] = [];

/** A kubeconfig for a ServiceAccount of the test cluster (test/harness/service-account.ts). */
const serviceAccountKubeconfig = (namespace: string, name: string) => serviceAccountKubeconfigIn(cluster, workDir, namespace, name);

const kubectlWith = (kubeconfig: string) => kubectlAs(kubeconfig, workDir);

/** A user: a ServiceAccount in the team namespace bound to `clusterRole` there. */
async function user(name: string, clusterRole: string) {
  await cluster.kubectlOk(['-n', teamNs, 'create', 'serviceaccount', name]);
  await cluster.kubectlOk(['-n', teamNs, 'create', 'rolebinding', `${name}-${clusterRole}`, `--clusterrole=${clusterRole}`, `--serviceaccount=${teamNs}:${name}`]);
  return { name: `system:serviceaccount:${teamNs}:${name}`, kubectl: kubectlWith(await serviceAccountKubeconfig(teamNs, name)) };
}

/** `kubectl patch` of a ModelVersion with a merge patch; `by` sets the stage-changed-by annotation. */
function patch(kubectl: (args: string[]) => Promise<KubectlResult>, name: string, change: { stage?: string; by?: string }, extra: string[] = []) {
  const body = {
    ...(change.by !== undefined ? { metadata: { annotations: { [STAGE_BY]: change.by } } } : {}),
    ...(change.stage !== undefined ? { spec: { stage: change.stage } } : {}),
  };
  return kubectl(['-n', teamNs, 'patch', 'modelversion', name, '--type=merge', '-p', JSON.stringify(body), ...extra]);
}

const version = (name: string) => cluster.client.get<ModelVersion>(MODEL_VERSIONS, teamNs, name);
const inStage = (name: string, stage: string) => eventually(`${name} in ${stage}`, async () => {
  const v = await version(name);
  return v.status?.stage === stage ? v : undefined;
}, 60_000);
const train = async (name: string, accuracy: number) => {
  await cluster.client.create(PIPELINE_RUNS, teamNs, pipelineRun({ name, namespace: teamNs, pipeline: 'iris-train', parameters: [{ name: 'accuracy', value: accuracy }], cachePolicy: 'Disabled' }));
  const run = await waitForRun(cluster, teamNs, name, { timeoutMs: 90_000, operatorLogs: operator.logs });
  assert.equal(run.status?.phase, 'Succeeded', JSON.stringify(run.status?.conditions));
};

before(async () => {
  cluster = connect();
  const helm = new Helm(await ensureHelm());
  workDir = await mkdtemp(join(tmpdir(), 'ferry-promotion-guard-'));
  operatorNs = await cluster.createNamespace('ferry-pg-op');
  teamNs = await cluster.createNamespace('ferry-pg-team');
  const release = `pg-${randomBytes(3).toString('hex')}`;
  fullname = `${release}-ferry`;
  // Namespace-scoped, so the cluster-scoped policy binds to this file's team namespace only.
  const objects = parseManifests(await helm.template({ release, namespace: operatorNs, values: { watchNamespaces: [teamNs] } }))
    .filter((o) => APPLIED_KINDS.has(o.kind));
  for (const o of objects) if (!o.metadata.namespace && o.kind !== 'ServiceAccount') clusterScoped.push(`${o.kind.toLowerCase()}/${o.metadata.name}`);
  assert.deepEqual(objects.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy')).map((o) => o.kind).sort(), ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']);
  await cluster.kubectlOk(['apply', '-f', '-'], objects.map((o) => dump(o)).join('---\n'));

  // bob may edit Ferry's objects (the chart's role for the built-in edit role); alice may promote.
  users.bob = await user('bob', `${fullname}-edit`);
  users.alice = await user('alice', `${fullname}-promoter`);

  // Policies take effect a moment after they are created: wait until one refuses.
  const probe = { apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion', metadata: { name: 'probe-v1', namespace: teamNs },
    spec: { modelName: 'probe', version: 1, stage: 'Production', artifact: { uri: 'file:///x', digest: `sha256:${'0'.repeat(64)}` } } };
  await eventually('the promotion guard in force', async () =>
    (await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(probe))).stderr.includes(STAGE_BY) ? true : undefined);

  operator = startOperator({
    kubeconfigPath: await serviceAccountKubeconfig(operatorNs, fullname),
    namespaces: [teamNs],
    leaseName: fullname,
    leaseNamespace: operatorNs,
    env: { FERRY_AGENT_IMAGE: AGENT_IMAGE },
  });
  await operator.waitForLog((l) => l.msg === 'controller started', 60_000);
  kubelet = new ProcessKubelet(cluster.client, teamNs, { agentImage: AGENT_IMAGE }).start();
  await cluster.client.create(PIPELINES, teamNs, pipeline({ name: 'iris-train', namespace: teamNs,
    parameters: [{ name: 'accuracy', type: 'float' }],
    promotion: [{ model: 'iris', stage: 'Production', when: [{ metric: 'accuracy', operator: '>=', value: 0.9 }], betterThanCurrent: { metric: 'accuracy', direction: 'Higher' } }],
    steps: [step('train', {
      parameters: ['accuracy'],
      command: sh('echo "weights of $FERRY_RUN" > /ferry/outputs/model && echo "{\\"accuracy\\": $FERRY_PARAM_ACCURACY}" > /ferry/outputs/metrics.json'),
      outputs: [{ name: 'model', type: 'model', register: { name: 'iris' } }],
    })],
  }));
});

after(async () => {
  await kubelet?.stop();
  await operator?.stop();
  if (clusterScoped.length > 0) await cluster?.kubectl(['delete', '--ignore-not-found', ...clusterScoped]);
  await cluster?.cleanup();
  await rm(workDir, { recursive: true, force: true });
});

describe('the promotion guard', () => {
  it("lets the operator's ServiceAccount promote by policy: a run above the threshold reaches Production", async () => {
    await train('iris-train-1', 0.95);
    const v1 = await inStage('iris-v1', 'Production');
    assert.equal(v1.status?.history?.at(-1)?.by, 'ferry promotion policy of pipeline "iris-train" (run "iris-train-1")');
    assert.match(v1.status?.history?.at(-1)?.reason ?? '', /promoted to Production: accuracy 0.95 >= 0.9/);
    await train('iris-train-2', 0.5);
    const v2 = await inStage('iris-v2', 'None');
    assert.match(v2.status?.history?.at(-1)?.reason ?? '', /not promoted to Production: not accuracy 0.5 >= 0.9/);
  });

  it('refuses Production to a user without the promote verb, saying what is missing', async (t) => {
    assert.equal((await users.bob.kubectl(['auth', 'can-i', 'promote', 'modelversions.ferry.dev', '-n', teamNs])).stdout.trim(), 'no');
    const refused = await patch(users.bob.kubectl, 'iris-v2', { stage: 'Production', by: users.bob.name });
    t.diagnostic(`refusal: ${refused.stderr.trim()}`);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`ValidatingAdmissionPolicy '${fullname}-promotion-guard' .*denied request: user ${users.bob.name} may not move ModelVersion iris-v2 to Production: that needs the promote verb on modelversions.ferry.dev in namespace ${teamNs} \\(a RoleBinding to the ClusterRole ${fullname}-promoter\\)`));
    assert.equal((await version('iris-v2')).spec.stage, 'None');
    // Other stages need no promote verb, only the user's own name on the change.
    assert.equal((await patch(users.bob.kubectl, 'iris-v2', { stage: 'Staging', by: users.bob.name })).code, 0);
    const staged = await inStage('iris-v2', 'Staging');
    assert.deepEqual([staged.status?.history?.at(-1)?.by, staged.status?.history?.at(-1)?.reason], [users.bob.name, `stage set to Staging by ${users.bob.name}`]);
  });

  it('lets a user bound to the promoter role promote; the history names that user and the operator archives the old version', async () => {
    assert.equal((await users.alice.kubectl(['auth', 'can-i', 'promote', 'modelversions.ferry.dev', '-n', teamNs])).stdout.trim(), 'yes');
    const promoted = await patch(users.alice.kubectl, 'iris-v2', { stage: 'Production', by: users.alice.name });
    assert.equal(promoted.code, 0, promoted.stderr);
    const v2 = await inStage('iris-v2', 'Production');
    assert.deepEqual(v2.status?.history?.at(-1), { stage: 'Production', at: v2.status?.history?.at(-1)?.at, by: users.alice.name, reason: `stage set to Production by ${users.alice.name}` });
    // The operator moved iris-v1 out, as its ServiceAccount, through the same policy.
    const v1 = await inStage('iris-v1', 'Archived');
    assert.deepEqual([v1.status?.history?.at(-1)?.by, v1.status?.history?.at(-1)?.reason], ['ferry (one Production version per model)', 'replaced in Production by iris-v2']);
  });

  it('requires every stage change to carry the requesting user in ferry.dev/stage-changed-by', async (t) => {
    const unnamed = await patch(users.alice.kubectl, 'iris-v1', { stage: 'Staging' });
    t.diagnostic(`no annotation: ${unnamed.stderr.trim()}`);
    assert.match(unnamed.stderr, new RegExp(`denied request: a change of spec.stage must set the annotation ${STAGE_BY} to the requesting user, "${users.alice.name}"`));
    // The annotation is stale from the operator's archiving: it names the operator, not alice.
    assert.match(unnamed.stderr, /not "ferry \(one Production version per model\)"/);
    const asSomeoneElse = await patch(users.bob.kubectl, 'iris-v1', { stage: 'Staging', by: users.alice.name });
    assert.match(asSomeoneElse.stderr, new RegExp(`to the requesting user, "${users.bob.name}".*not "${users.alice.name}"`));
    const asTheOperator = await patch(users.bob.kubectl, 'iris-v1', { stage: 'Staging', by: 'ferry promotion policy of pipeline "iris-train" (run "iris-train-1")' });
    assert.notEqual(asTheOperator.code, 0);
    // Nor may the annotation be rewritten on its own to blame someone else for the last change.
    const relabel = await patch(users.bob.kubectl, 'iris-v2', { by: `system:serviceaccount:${teamNs}:carol` });
    assert.match(relabel.stderr, /denied request: a change of spec.stage must set the annotation/);
    // Cluster admins too (system:masters may promote, but must say who they are).
    const admin = await cluster.kubectl(['-n', teamNs, 'patch', 'modelversion', 'iris-v1', '--type=merge', '--dry-run=server', '-p', '{"spec":{"stage":"Production"}}']);
    assert.match(admin.stderr, /to the requesting user, "ferry-admin"/);
    assert.equal((await version('iris-v1')).spec.stage, 'Archived');
    // A version created at None (the default) changes no stage: no annotation needed. Created at Staging, it does.
    const { artifact } = (await version('iris-v1')).spec;
    const handMade = (stage: string) => JSON.stringify({
      apiVersion: 'ferry.dev/v1alpha1', kind: 'ModelVersion', metadata: { name: 'iris-v90', namespace: teamNs },
      spec: { modelName: 'iris', version: 90, stage, artifact },
    });
    const atNone = await users.bob.kubectl(['create', '--dry-run=server', '-f', '-'], handMade('None'));
    assert.equal(atNone.code, 0, atNone.stderr);
    const atStaging = await users.bob.kubectl(['create', '--dry-run=server', '-f', '-'], handMade('Staging'));
    assert.match(atStaging.stderr, new RegExp(`denied request: a change of spec.stage must set the annotation ${STAGE_BY} to the requesting user, "${users.bob.name}"`));
  });

  it('records the real user, not a forged field manager', async () => {
    type Raw = ModelVersion & { metadata: { managedFields?: Array<{ manager: string; fieldsV1?: { 'f:spec'?: Record<string, unknown> } }> } };
    const stageManagers = async () => ((await cluster.client.get<Raw>(MODEL_VERSIONS, teamNs, 'iris-v1')).metadata.managedFields ?? [])
      .filter((f) => f.fieldsV1?.['f:spec']?.['f:stage'] !== undefined).map((f) => f.manager);
    const last = async () => (await version('iris-v1')).status?.history?.at(-1);

    // bob claims to be alice through the field manager: the forgery takes (alice's name owns spec.stage) ...
    const asAlice = await patch(users.bob.kubectl, 'iris-v1', { stage: 'Staging', by: users.bob.name }, [`--field-manager=${users.alice.name}`]);
    assert.equal(asAlice.code, 0, asAlice.stderr);
    await inStage('iris-v1', 'Staging');
    assert.deepEqual(await stageManagers(), [users.alice.name]);
    // ... and yet the history names bob.
    assert.deepEqual(await last(), { stage: 'Staging', at: (await last())?.at, by: users.bob.name, reason: `stage set to Staging by ${users.bob.name}` });

    // And as the operator (`kubectl --field-manager=ferry-operator`).
    const asOperator = await patch(users.bob.kubectl, 'iris-v1', { stage: 'None', by: users.bob.name }, ['--field-manager=ferry-operator']);
    assert.equal(asOperator.code, 0, asOperator.stderr);
    await inStage('iris-v1', 'None');
    assert.deepEqual(await stageManagers(), ['ferry-operator']);
    assert.deepEqual([(await last())?.by, (await last())?.reason], [users.bob.name, `stage set to None by ${users.bob.name}`]);
    assert.deepEqual((await version('iris-v1')).status?.history?.map((h) => [h.stage, h.by]), [
      ['Production', 'ferry promotion policy of pipeline "iris-train" (run "iris-train-1")'],
      ['Archived', 'ferry (one Production version per model)'],
      ['Staging', users.bob.name],
      ['None', users.bob.name],
    ]);
    // A forged manager gets no further with Production either.
    const production = await patch(users.bob.kubectl, 'iris-v1', { stage: 'Production', by: users.bob.name }, ['--field-manager=ferry-operator']);
    assert.match(production.stderr, /may not move ModelVersion iris-v1 to Production/);
  });

  it("still promotes by policy over a version a user promoted, and archives it as the operator", async () => {
    await train('iris-train-3', 0.97);
    const v3 = await inStage('iris-v3', 'Production');
    assert.match(v3.status?.history?.at(-1)?.reason ?? '', /promoted to Production: accuracy 0.97 >= 0.9 and accuracy 0.97 > 0.5 of iris-v2/);
    const v2 = await inStage('iris-v2', 'Archived');
    assert.deepEqual(v2.status?.history?.map((h) => [h.stage, h.by]), [
      ['None', 'ferry promotion policy of pipeline "iris-train" (run "iris-train-2")'],
      ['Staging', users.bob.name],
      ['Production', users.alice.name],
      ['Archived', 'ferry (one Production version per model)'],
    ]);
  });

  it('does not promote to Production by a rule without conditions', async () => {
    await cluster.client.create(PIPELINES, teamNs, pipeline({ name: 'penguins-train', namespace: teamNs,
      promotion: [{ model: 'penguins', stage: 'Production', when: [] }],
      steps: [step('train', { command: sh('echo weights > /ferry/outputs/model'), outputs: [{ name: 'model', type: 'model', register: { name: 'penguins' } }] })],
    }));
    await cluster.client.create(PIPELINE_RUNS, teamNs, pipelineRun({ name: 'penguins-train-1', namespace: teamNs, pipeline: 'penguins-train' }));
    assert.equal((await waitForRun(cluster, teamNs, 'penguins-train-1', { timeoutMs: 90_000, operatorLogs: operator.logs })).status?.phase, 'Succeeded');
    const v1 = await inStage('penguins-v1', 'None');
    assert.equal(v1.spec.stage, 'None');
    assert.equal(v1.status?.history?.at(-1)?.reason, 'not promoted to Production: a promotion rule for Production needs at least one condition in `when`');
  });

  it('never refused the operator', () => {
    const denied = operator.logs.filter((l) => /forbidden|denied request|\b403\b|\b422\b/i.test(JSON.stringify(l)));
    assert.deepEqual(denied, []);
  });
});
