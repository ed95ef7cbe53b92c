import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION } from '../../api/v1alpha1/common.ts';
import type { ResolvedParameter } from '../../api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { InputSpec } from '../../agent/protocol.ts';
import { HttpArtifactStore } from '../../artifacts/http-store.ts';
import { buildStepPod, DEADLINE_SLACK_SECONDS, DEFAULT_RUN_AS_USER, type AgentSettings } from './pod-spec.ts';
import { FETCH_CONTAINER, PUBLISH_CONTAINER, STEP_CONTAINER } from './pod-status.ts';
import { GRANT_SLACK_SECONDS, stepAccess } from './step-access.ts';
import { NAMESPACE, RUN_UID, TEST_IMAGE, pipelineRun, step } from '../../../test/builders.ts';

const parameters: ResolvedParameter[] = [
  { name: 'lr', value: '0.01', source: 'run' },
  { name: 'batch-size', value: '32', source: 'default' },
];

const trainStep = step('train', {
  command: ['python', '-m', 'train'],
  args: ['--lr=$(params.lr)', '--batch=$(params.batch-size)', '$(params.unknown)'],
  parameters: ['lr', 'batch-size'],
  env: [
    { name: 'MODE', value: 'lr=$(params.lr)' },
    { name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: 'hub', key: 'token' } } },
    { name: 'REGION', valueFrom: { configMapKeyRef: { name: 'site', key: 'region' } } },
  ],
  timeoutSeconds: 900,
  resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { 'nvidia.com/gpu': 1 } },
  nodeSelector: { pool: 'gpu' },
  tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
});

const agent: AgentSettings = { image: 'ferry:0.1.0', storeRoot: 'file:///var/lib/ferry/artifacts', signedUrls: true };
const store = new HttpArtifactStore('file:///var/lib/ferry/artifacts', 'http://ferry-artifacts.ferry-system.svc:8081', Buffer.alloc(32, 7));
const configuration = { uri: `file:///var/lib/ferry/artifacts/${NAMESPACE}/train/r1/pipeline-configuration.json`, digest: `sha256:${'c'.repeat(64)}` };
const inputs: InputSpec[] = [{ name: 'data', uri: `file:///var/lib/ferry/artifacts/${NAMESPACE}/blobs/sha256/${'e'.repeat(64)}`, digest: `sha256:${'e'.repeat(64)}` }];
const NOW = new Date('2026-01-01T00:00:00Z');
const access = await stepAccess({ store, namespace: NAMESPACE, runUid: RUN_UID, step: { ...trainStep, outputs: [{ name: 'model', type: 'model' }] }, attempt: 2, inputs, configuration, now: NOW });
const base = { pipelineName: 'p', parameters, access, agent };
const build = (extra: Partial<Parameters<typeof buildStepPod>[0]> = {}) =>
  buildStepPod({ ...base, run: pipelineRun(), pipelineName: 'train-pipeline', step: trainStep, attempt: 2, ...extra });
const stepContainer = (pod: ReturnType<typeof buildStepPod>) => pod.spec?.initContainers?.find((c) => c.name === STEP_CONTAINER);

describe('buildStepPod', () => {
  const pod = build();
  const container = stepContainer(pod);
  const env = new Map((container?.env ?? []).map((e) => [e.name, e]));

  it('is named <run>-<step>-<attempt> in the run namespace', () => {
    assert.equal(pod.metadata.name, 'r1-train-2');
    assert.equal(pod.metadata.namespace, NAMESPACE);
  });

  it('carries the run, step, pipeline, attempt and managed-by labels', () => {
    assert.deepEqual(pod.metadata.labels, {
      'app.kubernetes.io/managed-by': 'ferry',
      'ferry.dev/run': 'r1',
      'ferry.dev/pipeline': 'train-pipeline',
      'ferry.dev/step': 'train',
      'ferry.dev/attempt': '2',
    });
  });

  it('is controlled by its run (garbage collected with it)', () => {
    assert.deepEqual(pod.metadata.ownerReferences, [
      { apiVersion: API_VERSION, kind: 'PipelineRun', name: 'r1', uid: RUN_UID, controller: true, blockOwnerDeletion: true },
    ]);
  });

  it('bounds /ferry by the scratch size limit, and a step without a timeout by the default one', () => {
    const bounded = build({ step: step('quick'), agent: { ...agent, scratchSizeLimit: '5Gi', defaultTimeoutSeconds: 3600 } });
    assert.deepEqual(bounded.spec?.volumes?.[0], { name: 'ferry', emptyDir: { sizeLimit: '5Gi' } });
    assert.equal(bounded.spec?.activeDeadlineSeconds, 3600 + DEADLINE_SLACK_SECONDS);
    assert.equal(build({ agent: { ...agent, defaultTimeoutSeconds: 3600 } }).spec?.activeDeadlineSeconds, 900 + DEADLINE_SLACK_SECONDS, "the step's own timeout wins");
  });

  it('never restarts, mounts no token, and is bounded by the step timeout', () => {
    assert.equal(pod.spec?.restartPolicy, 'Never');
    assert.equal(pod.spec?.automountServiceAccountToken, false);
    assert.equal(pod.spec?.enableServiceLinks, false);
    // A backstop only: the planner times the step container itself (plan.ts), an hour before this.
    assert.equal(DEADLINE_SLACK_SECONDS, 3600);
    assert.equal(pod.spec?.activeDeadlineSeconds, 900 + 3600);
    assert.equal(build({ step: step('quick') }).spec?.activeDeadlineSeconds, undefined);
  });

  it('runs with a restricted security context', () => {
    assert.deepEqual(pod.spec?.securityContext, {
      runAsNonRoot: true,
      runAsUser: DEFAULT_RUN_AS_USER,
      runAsGroup: DEFAULT_RUN_AS_USER,
      fsGroup: DEFAULT_RUN_AS_USER,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    assert.deepEqual(container?.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  });

  it('runs fetch-inputs, then the step, as init containers, and publish-outputs as the main container', () => {
    assert.deepEqual(pod.spec?.initContainers?.map((c) => c.name), [FETCH_CONTAINER, STEP_CONTAINER]);
    assert.deepEqual(pod.spec?.containers.map((c) => c.name), [PUBLISH_CONTAINER]);
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      assert.ok(c.volumeMounts?.some((m) => m.name === 'ferry' && m.mountPath === '/ferry'), `${c.name} mounts /ferry`);
      assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
    assert.deepEqual(pod.spec?.volumes?.[0], { name: 'ferry', emptyDir: {} });
  });

  it('tells the agent what to fetch and publish, each object with its own signed URL and no store credential', () => {
    const fetch = pod.spec?.initContainers?.[0];
    const publish = pod.spec?.containers[0];
    const envOf = (c: typeof fetch) => new Map((c?.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(fetch?.image, 'ferry:0.1.0');
    assert.deepEqual(fetch?.args, ['agent', 'fetch-inputs']);
    assert.deepEqual(publish?.args, ['agent', 'publish-outputs']);
    const fetched = JSON.parse(envOf(fetch).get('FERRY_INPUTS') ?? '') as InputSpec[];
    assert.deepEqual(fetched.map(({ name, uri, digest }) => ({ name, uri, digest })), inputs);
    assert.match(fetched[0]?.url ?? '', /^http:\/\/ferry-artifacts\.ferry-system\.svc:8081\/v1\/objects\/.+\?method=GET&expires=\d+&signature=/);
    assert.match(JSON.parse(envOf(fetch).get('FERRY_CONFIGURATION') ?? '').url, /method=GET/);
    const outputs = JSON.parse(envOf(publish).get('FERRY_OUTPUTS') ?? '') as Array<{ uri: string; url: string }>;
    assert.equal(outputs[0]?.uri, `file:///var/lib/ferry/artifacts/${NAMESPACE}/runs/${RUN_UID}/train/2/model.tar`);
    assert.match(outputs[0]?.url ?? '', /method=PUT/);
    assert.match(JSON.parse(envOf(publish).get('FERRY_REPORT') ?? '').uri, new RegExp(`/${NAMESPACE}/runs/${RUN_UID}/train/2/report\\.json$`));
    for (const c of [fetch, publish, container]) {
      assert.equal(envOf(c).has('FERRY_ARTIFACT_STORE'), false, `${c?.name} is not told the store root`);
      assert.equal(envOf(c).has('GOOGLE_APPLICATION_CREDENTIALS'), false);
      assert.deepEqual(c?.volumeMounts?.map((m) => m.name), ['ferry'], `${c?.name} mounts only /ferry`);
    }
    assert.deepEqual(pod.spec?.volumes?.map((v) => v.name), ['ferry']);
  });

  it('signs URLs for the step timeout plus slack, counted from the Pod\'s creation', () => {
    const expires = Number(new URL(access.inputs[0]?.url ?? '').searchParams.get('expires'));
    assert.equal(expires, NOW.getTime() / 1000 + 900 + GRANT_SLACK_SECONDS);
  });

  it('without signed URLs (a gs:// store), gives the agent the store root and the key Secret, never the user step', () => {
    const gcs: AgentSettings = { image: 'ferry:0.1.0', storeRoot: 'gs://bucket/ferry', signedUrls: false, gcsCredentialsSecret: 'gcs-key' };
    const direct = build({ agent: gcs, access: { inputs, outputs: [], configuration } });
    const publish = direct.spec?.containers[0];
    assert.equal(publish?.env?.find((e) => e.name === 'FERRY_ARTIFACT_STORE')?.value, 'gs://bucket/ferry');
    assert.ok(publish?.volumeMounts?.some((m) => m.name === 'ferry-gcs-key'));
    assert.equal(stepContainer(direct)?.volumeMounts?.length, 1, 'the user step does not see the key');
  });

  it('runs the step with the image, command, resources and placement of the step', () => {
    assert.equal(container?.name, STEP_CONTAINER);
    assert.equal(container?.image, TEST_IMAGE);
    assert.deepEqual(container?.command, ['python', '-m', 'train']);
    assert.deepEqual(container?.resources, { requests: { cpu: '500m', memory: '1Gi' }, limits: { 'nvidia.com/gpu': 1 } });
    assert.deepEqual(pod.spec?.nodeSelector, { pool: 'gpu' });
    assert.deepEqual(pod.spec?.tolerations, [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    assert.equal(container?.terminationMessagePolicy, 'FallbackToLogsOnError');
  });

  it('substitutes $(params.x) in args and env values, leaving unknown references as written', () => {
    assert.deepEqual(container?.args, ['--lr=0.01', '--batch=32', '$(params.unknown)']);
    assert.deepEqual(env.get('MODE'), { name: 'MODE', value: 'lr=0.01' });
  });

  it('passes declared parameters as FERRY_PARAM_<NAME>', () => {
    assert.equal(env.get('FERRY_PARAM_LR')?.value, '0.01');
    assert.equal(env.get('FERRY_PARAM_BATCH_SIZE')?.value, '32');
  });

  it('tells the step who it is', () => {
    assert.equal(env.get('FERRY_RUN')?.value, 'r1');
    assert.equal(env.get('FERRY_PIPELINE')?.value, 'train-pipeline');
    assert.equal(env.get('FERRY_STEP')?.value, 'train');
    assert.equal(env.get('FERRY_ATTEMPT')?.value, '2');
  });

  it('passes secret and config map references through as references, never as values', () => {
    assert.deepEqual(env.get('API_TOKEN'), { name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: 'hub', key: 'token' } } });
    assert.deepEqual(env.get('REGION'), { name: 'REGION', valueFrom: { configMapKeyRef: { name: 'site', key: 'region' } } });
  });

  it('has unique env names', () => {
    const names = (container?.env ?? []).map((e) => e.name);
    assert.equal(new Set(names).size, names.length);
  });

  it('omits command and args the step does not set', () => {
    const bare = stepContainer(build({ step: { name: 'bare', image: TEST_IMAGE } }));
    assert.equal(bare?.command, undefined);
    assert.equal(bare?.args, undefined);
  });

  describe('with a long run name', () => {
    const longRun = pipelineRun({ name: `nightly-${'x'.repeat(80)}-training` });
    const a = buildStepPod({ ...base, run: longRun, step: trainStep, attempt: 1 });
    const again = buildStepPod({ ...base, run: longRun, step: trainStep, attempt: 1 });
    const next = buildStepPod({ ...base, run: longRun, step: trainStep, attempt: 2 });

    it('gets a name of at most 63 characters ending in a hash', () => {
      assert.ok(a.metadata.name.length <= 63, a.metadata.name);
      assert.match(a.metadata.name, /^nightly-x+-[0-9a-f]{10}$/);
    });

    it('gets the same name on every call, and another for another attempt', () => {
      assert.equal(again.metadata.name, a.metadata.name);
      assert.notEqual(next.metadata.name, a.metadata.name);
    });

    it('gets a run label that is a valid label value', () => {
      const value = a.metadata.labels?.['ferry.dev/run'] ?? '';
      assert.ok(value.length <= 63);
      assert.match(value, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      assert.equal(a.metadata.ownerReferences?.[0]?.name, longRun.metadata.name, 'the owner reference keeps the full name');
    });
  });
});

describe('buildStepPod: volumes, service account, scheduling and podMetadata of a step', () => {
  const podStep = step('train', {
    volumes: [
      { name: 'data', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } },
      { name: 'settings', configMap: { name: 'train-settings', items: [{ key: 'config.yaml', path: 'config.yaml' }], defaultMode: 0o444 } },
      { name: 'hub', secret: { secretName: 'hub-token', defaultMode: 0o400 } },
      { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } },
      { name: 'scratch', emptyDir: {} },
    ],
    volumeMounts: [
      { name: 'data', mountPath: '/data', readOnly: true },
      { name: 'settings', mountPath: '/etc/train' },
      { name: 'hub', mountPath: '/var/run/hub', readOnly: true, subPath: 'token' },
      { name: 'shm', mountPath: '/dev/shm' },
      { name: 'scratch', mountPath: '/scratch' },
    ],
    serviceAccountName: 'trainer',
    automountServiceAccountToken: true,
    priorityClassName: 'batch-high',
    runtimeClassName: 'gvisor',
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['gpu'] }] }] },
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, preference: { matchExpressions: [{ key: 'zone', operator: 'Exists' }] } }],
      },
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 50, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { 'ferry.dev/step': 'train' } } } },
        ],
      },
    },
  });
  const pipelineSpec = {
    imagePullSecrets: [{ name: 'registry-creds' }],
    podMetadata: {
      labels: { team: 'vision', cost: 'pipeline', 'ferry.dev/run': 'spoofed', 'app.kubernetes.io/managed-by': 'helm' },
      annotations: { 'example.com/owner': 'vision', 'kubectl.kubernetes.io/default-container': 'publish-outputs' },
    },
  };
  const run = pipelineRun({ podMetadata: { labels: { cost: 'run-42' }, annotations: { 'example.com/ticket': 'ML-7' } } });
  const pod = build({ step: podStep, run, pipeline: pipelineSpec, agent: { ...agent, scratchSizeLimit: '5Gi' } });
  const container = stepContainer(pod);
  const agents = [pod.spec?.initContainers?.[0], pod.spec?.containers[0]];
  const volume = (name: string) => pod.spec?.volumes?.find((v) => v.name === name);

  it('puts each volume onto the Pod with its one source; an emptyDir on disk gets the /ferry size limit', () => {
    assert.deepEqual(volume('data'), { name: 'data', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } });
    assert.deepEqual(volume('settings'), { name: 'settings', configMap: { name: 'train-settings', items: [{ key: 'config.yaml', path: 'config.yaml' }], defaultMode: 0o444 } });
    assert.deepEqual(volume('hub'), { name: 'hub', secret: { secretName: 'hub-token', defaultMode: 0o400 } });
    assert.deepEqual(volume('shm'), { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } });
    assert.deepEqual(volume('scratch'), { name: 'scratch', emptyDir: { sizeLimit: '5Gi' } });
  });

  it('mounts the user volumes into the step container only; the agents keep only /ferry', () => {
    assert.deepEqual(container?.volumeMounts, [
      { name: 'ferry', mountPath: '/ferry' },
      { name: 'data', mountPath: '/data', readOnly: true },
      { name: 'settings', mountPath: '/etc/train' },
      { name: 'hub', mountPath: '/var/run/hub', readOnly: true, subPath: 'token' },
      { name: 'shm', mountPath: '/dev/shm' },
      { name: 'scratch', mountPath: '/scratch' },
      { name: 'ferry-service-account-token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ]);
    for (const c of agents) assert.deepEqual(c?.volumeMounts, [{ name: 'ferry', mountPath: '/ferry' }], `${c?.name} mounts only /ferry`);
  });

  it('projects the service account token into the step container only, and never automounts it', () => {
    assert.equal(pod.spec?.serviceAccountName, 'trainer');
    assert.equal(pod.spec?.automountServiceAccountToken, false, 'automounting would put the token into every container');
    assert.deepEqual(volume('ferry-service-account-token')?.projected?.sources?.map((s) => Object.keys(s)[0]), ['serviceAccountToken', 'configMap', 'downwardAPI']);
    assert.deepEqual(volume('ferry-service-account-token')?.projected?.sources?.[0], { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } });
    const holders = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter((c) => c.volumeMounts?.some((m) => m.name === 'ferry-service-account-token'));
    assert.deepEqual(holders.map((c) => c.name), [STEP_CONTAINER]);
    const withoutToken = build({ step: { ...podStep, automountServiceAccountToken: false } });
    assert.equal(withoutToken.spec?.volumes?.some((v) => v.name === 'ferry-service-account-token'), false);
    assert.equal(stepContainer(withoutToken)?.volumeMounts?.some((m) => m.mountPath.startsWith('/var/run/secrets/kubernetes.io')), false);
    assert.equal(withoutToken.spec?.serviceAccountName, 'trainer', 'the Pod still runs as the service account (workload identity)');
  });

  it('sets the priority class, runtime class, affinity and image pull secrets', () => {
    assert.equal(pod.spec?.priorityClassName, 'batch-high');
    assert.equal(pod.spec?.runtimeClassName, 'gvisor');
    assert.deepEqual(pod.spec?.affinity, podStep.affinity);
    assert.deepEqual(pod.spec?.imagePullSecrets, [{ name: 'registry-creds' }]);
    const plain = build();
    for (const field of ['serviceAccountName', 'priorityClassName', 'runtimeClassName', 'affinity', 'imagePullSecrets'] as const) {
      assert.equal(plain.spec?.[field], undefined, `${field} is unset for a step that sets none`);
    }
  });

  it("copies podMetadata, the run's over the pipeline's, never over Ferry's own labels", () => {
    assert.deepEqual(pod.metadata.labels, {
      team: 'vision',
      cost: 'run-42',
      'app.kubernetes.io/managed-by': 'ferry',
      'ferry.dev/run': 'r1',
      'ferry.dev/pipeline': 'train-pipeline',
      'ferry.dev/step': 'train',
      'ferry.dev/attempt': '2',
    });
    assert.deepEqual(pod.metadata.annotations, {
      'example.com/owner': 'vision',
      'example.com/ticket': 'ML-7',
      'kubectl.kubernetes.io/default-container': STEP_CONTAINER,
    });
  });

  it('names the step container as the default one for kubectl logs and exec', () => {
    assert.deepEqual(build().metadata.annotations, { 'kubectl.kubernetes.io/default-container': STEP_CONTAINER });
  });

  it('takes only the offered fields from a configuration, whatever else it holds (no hostPath, no other namespaces)', () => {
    // As a configuration no CRD schema has seen might hold it.
    const crafted = {
      ...step('crafted'),
      volumes: [{ name: 'host', hostPath: { path: '/' }, emptyDir: {} }],
      affinity: {
        nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }] } },
        podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'zone', namespaces: ['team-b'], namespaceSelector: {} }] },
      },
    } as unknown as StepSpec;
    const built = build({ step: crafted });
    assert.deepEqual(built.spec?.volumes?.find((v) => v.name === 'host'), { name: 'host', emptyDir: {} });
    assert.deepEqual(built.spec?.affinity, {
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [] }] } },
      podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'zone' }] },
    });
  });

  it('keeps the restricted security context whatever the step sets', () => {
    assert.deepEqual(pod.spec?.securityContext, build().spec?.securityContext);
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
  });
});
