// The Helm chart with the real helm (pinned, built by test/tools/helm): lint and render with
// default and non-default values, every rendered object server-side dry-run applied on the
// harness's real API server (schema, field and Pod Security errors cannot land), the schema
// rejecting wrong values with clear messages, and manifests/ + the chart's CRDs up to date.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { load } from 'js-yaml';
import { INSTALL_MANIFEST, NAMESPACE, renderInstallManifest, staleChartCrds } from '../../scripts/render-manifests.ts';
import { connect, type TestCluster } from '../harness/cluster.ts';
import { CHART_DIR, Helm, ensureHelm, parseManifests, type KubeManifest } from '../harness/helm.ts';

const ROOT = join(import.meta.dirname, '..', '..');

/** Namespaces a value set may name; the dry-run creates real ones, lint gets these. */
interface Places {
  watch: string[];
}

/** Value sets the chart must lint, render and apply with; each name says what it exercises. */
const VALUE_SETS: Record<string, (p: Places) => Record<string, unknown>> = {
  'default values': () => ({}),
  'namespace-scoped (watchNamespaces)': (p) => ({ watchNamespaces: p.watch }),
  'a gs:// store with a key Secret and an emulator endpoint': () => ({
    artifacts: { store: 'gs://ferry-artifacts/prod', gcs: { credentialsSecret: 'ferry-gcs-key', endpoint: 'http://fake-gcs.ferry-system.svc:4443' } },
  }),
  'two replicas with a PodDisruptionBudget and a ReadWriteMany volume': () => ({
    replicaCount: 2,
    podDisruptionBudget: { enabled: true },
    artifacts: { persistence: { accessMode: 'ReadWriteMany', size: '50Gi', storageClassName: 'nfs' } },
  }),
  'a ServiceMonitor': () => ({ metrics: { serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prometheus' } } } }),
  'the in-chart PostgreSQL': () => ({ database: { postgresql: { enabled: true, password: 'not-a-secret' } } }),
  'an external database, a pinned digest, fewer permissions': () => ({
    image: { repository: 'registry.example.com/ml/ferry', digest: `sha256:${'a'.repeat(64)}` },
    imagePullSecrets: ['registry-creds'],
    database: { external: { secretName: 'ferry-db', secretKey: 'dsn' } },
    rbac: { readImagePullSecrets: false, aggregateToDefaultRoles: false },
    operator: { logLevel: 'debug', workers: 8, insecureRegistries: ['registry.local:5000'], extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=768' }] },
    artifacts: { persistence: { enabled: false, existingClaim: 'shared-artifacts' } },
    serviceAccount: { annotations: { 'iam.gke.io/gcp-service-account': 'ferry@project.iam.gserviceaccount.com' } },
  }),
};

// A subset of prometheus-operator's ServiceMonitor CRD, with the real types and patterns of
// the fields the chart sets. The harness API server has no Prometheus Operator, and a stub
// that preserved unknown fields would prove nothing: with this schema, the API server's strict
// field validation rejects a misspelt or mistyped field as it would in a real cluster.
const SERVICE_MONITOR_CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [selector]
              properties:
                jobLabel: {type: string}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                selector:
                  type: object
                  x-kubernetes-map-type: atomic
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                    matchExpressions:
                      type: array
                      items:
                        type: object
                        required: [key, operator]
                        properties:
                          key: {type: string}
                          operator: {type: string}
                          values: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      targetPort: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      honorLabels: {type: boolean}
`;

let cluster: TestCluster;
let helm: Helm;

before(async () => {
  cluster = connect();
  helm = new Helm(await ensureHelm());
});

after(async () => {
  await cluster?.kubectl(['delete', '--ignore-not-found', '--wait=false', 'crd', 'servicemonitors.monitoring.coreos.com']);
  await cluster?.cleanup();
});

const byKind = (objects: KubeManifest[], kind: string) => objects.filter((o) => o.kind === kind);
const one = (objects: KubeManifest[], kind: string, name?: string): KubeManifest => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ''}, found ${found.map((o) => o.metadata.name).join(', ') || 'none'}`);
  return found[0]!;
};

interface Container {
  name: string;
  image: string;
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, unknown> }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  ports?: Array<{ name: string; containerPort: number }>;
  securityContext?: Record<string, unknown>;
}
interface PodSpec {
  containers: Container[];
  volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName: string }; secret?: { secretName: string } }>;
  securityContext?: Record<string, unknown>;
  topologySpreadConstraints?: Array<{ topologyKey: string; labelSelector?: { matchLabels?: Record<string, string> } }>;
  serviceAccountName?: string;
}
/** The operator's Deployment (the artifact server of a file:// store is another one). */
const podSpecOf = (objects: KubeManifest[]) => (one(objects.filter((o) => o.metadata.labels?.['app.kubernetes.io/component'] !== 'artifact-server'), 'Deployment') as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const operatorContainer = (objects: KubeManifest[]) => podSpecOf(objects).containers.find((c) => c.name === 'operator')!;
const envOf = (objects: KubeManifest[]) => new Map((operatorContainer(objects).env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));

describe('chart files', () => {
  it("keeps the same CRD bytes as crds/ in the chart's crds/ (run npm run manifests when this fails)", async () => {
    assert.deepEqual(await staleChartCrds(), []);
  });

  it("has the package's version as version and appVersion", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const chart = load(await readFile(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { version: string; appVersion: string };
    assert.equal(chart.version, pkg.version);
    assert.equal(chart.appVersion, pkg.version);
  });

  it('manifests/install.yaml is the chart rendered with default values (run npm run manifests when this fails)', async () => {
    const committed = await readFile(INSTALL_MANIFEST, 'utf8');
    assert.ok(committed === (await renderInstallManifest(helm)), 'manifests/install.yaml differs from a fresh helm template: run npm run manifests');
  });

  it('the Argo CD Application example installs this chart with values the schema accepts', async () => {
    type Application = { spec: { source: { path: string; helm: { releaseName: string; valuesObject: Record<string, unknown> } }; destination: { namespace: string } } };
    const app = load(await readFile(join(ROOT, 'manifests', 'argocd', 'application.yaml'), 'utf8')) as Application;
    assert.equal(join(ROOT, app.spec.source.path), CHART_DIR);
    const lint = await helm.lint(app.spec.source.helm.valuesObject);
    assert.equal(lint.code, 0, lint.stdout + lint.stderr);
    assert.doesNotMatch(lint.stdout, /\[(WARNING|ERROR)\]/);
    await helm.template({ release: app.spec.source.helm.releaseName, namespace: app.spec.destination.namespace, values: app.spec.source.helm.valuesObject, includeCrds: true });
  });

  it('documents every value in values.yaml', async () => {
    // A key is documented by a comment right above it, or by one above a section holding it
    // (a pass-through block such as resources is documented as a whole).
    const lines = (await readFile(join(CHART_DIR, 'values.yaml'), 'utf8')).split('\n');
    const undocumented: string[] = [];
    const ancestors: Array<{ indent: number; documented: boolean }> = [];
    lines.forEach((line, i) => {
      const key = line.match(/^(\s*)([A-Za-z][\w]*):/);
      if (!key) return;
      const indent = key[1]!.length;
      while (ancestors.length > 0 && ancestors[ancestors.length - 1]!.indent >= indent) ancestors.pop();
      const documented = /^\s*#/.test(lines[i - 1] ?? '') || ancestors.some((a) => a.documented);
      const isSection = /:\s*$/.test(line);
      if (!documented && !isSection) undocumented.push(`values.yaml:${i + 1}: ${line.trim()}`);
      ancestors.push({ indent, documented });
    });
    assert.deepEqual(undocumented, []);
  });
});

describe('helm lint --strict', () => {
  for (const [name, values] of Object.entries(VALUE_SETS)) {
    it(`is clean with ${name}`, async () => {
      const result = await helm.lint(values({ watch: ['team-a', 'team-b'] }));
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(result.stdout, /\[(WARNING|ERROR)\]/);
    });
  }
});

describe('every rendered object passes a server-side dry run on the real API server', () => {
  before(async () => {
    await cluster.kubectlOk(['apply', '--server-side', '-f', '-'], SERVICE_MONITOR_CRD);
    await cluster.kubectlOk(['wait', '--for', 'condition=established', '--timeout=60s', 'crd/servicemonitors.monitoring.coreos.com']);
  });

  /** A namespace that enforces (and warns about) the restricted Pod Security Standard. */
  async function restrictedNamespace(prefix: string): Promise<string> {
    const namespace = await cluster.createNamespace(prefix);
    await cluster.kubectlOk(['label', 'namespace', namespace, 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/warn=restricted']);
    return namespace;
  }

  for (const [name, values] of Object.entries(VALUE_SETS)) {
    it(`with ${name}`, async () => {
      const namespace = await restrictedNamespace('chart');
      const watch = name.startsWith('namespace-scoped') ? [await restrictedNamespace('team'), await restrictedNamespace('team')] : [];
      const rendered = await helm.template({ release: 'ferry', namespace, values: values({ watch }), includeCrds: true });
      const objects = parseManifests(rendered);
      assert.ok(objects.length >= 8, `rendered ${objects.length} objects`);
      const result = await cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-f', '-'], rendered);
      assert.equal(result.code, 0, result.stderr);
      const applied = result.stdout.split('\n').filter((l) => l.includes('(server dry run)'));
      assert.equal(applied.length, objects.length, result.stdout);
      assert.doesNotMatch(result.stderr, /would violate PodSecurity/);
    });
  }

  // Negative controls: the dry run has teeth for what the values schema passes through.
  it('fails on a misspelt field in a pass-through value (strict field validation)', async () => {
    const namespace = await restrictedNamespace('chart');
    const rendered = await helm.template({ namespace, values: { securityContext: { readOnlyRootFilesystm: true } } });
    const result = await cluster.kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], rendered);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /securityContext\.readOnlyRootFilesystm: field not declared in schema/);
  });

  it('warns when values break the restricted Pod Security Standard', async () => {
    const namespace = await restrictedNamespace('chart');
    const rendered = await helm.template({ namespace, values: { securityContext: { allowPrivilegeEscalation: true, capabilities: { drop: ['ALL'] } } } });
    const result = await cluster.kubectl(['apply', '--server-side', '--dry-run=server', '-f', '-'], rendered);
    assert.match(result.stderr, /would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false/);
  });

  it('including manifests/install.yaml as `kubectl apply -f` applies it', async () => {
    // The rendered install names its own namespace; a dry run cannot create it for the rest.
    const exists = await cluster.kubectl(['get', 'namespace', NAMESPACE]);
    if (exists.code !== 0) await cluster.kubectlOk(['create', 'namespace', NAMESPACE]);
    const result = await cluster.kubectl(['apply', '--dry-run=server', '-f', INSTALL_MANIFEST]);
    assert.equal(result.code, 0, result.stderr);
    const kinds = parseManifests(await readFile(INSTALL_MANIFEST, 'utf8')).length;
    assert.equal(result.stdout.split('\n').filter((l) => l.includes('(server dry run)')).length, kinds, result.stdout);
    assert.doesNotMatch(result.stderr, /would violate PodSecurity/);
  });

  it('helm install --dry-run=server accepts the chart and prints NOTES with the next two commands', async () => {
    const namespace = await restrictedNamespace('notes');
    const result = await helm.run(['install', 'ferry', CHART_DIR, '--namespace', namespace, '--dry-run=server', '--kubeconfig', cluster.kubeconfigPath]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`kubectl -n ${namespace} rollout status deployment/ferry`));
    assert.match(result.stdout, new RegExp(`kubectl -n ${namespace} apply -f manifests/examples/diamond.yaml`));
    assert.match(result.stdout, new RegExp(`kubectl -n ${namespace} get pipelineruns -w`));
  });
});

describe('uninstalling', () => {
  it('every CRD is kept by Helm and by Argo CD when the release or the Application is deleted', async () => {
    for (const file of ['pipelines', 'pipelineruns', 'modelversions']) {
      const crd = load(await readFile(join(CHART_DIR, 'crds', `${file}.ferry.dev.yaml`), 'utf8')) as KubeManifest;
      assert.equal(crd.metadata.annotations?.['helm.sh/resource-policy'], 'keep', file);
      assert.equal(crd.metadata.annotations?.['argocd.argoproj.io/sync-options'], 'Delete=false', file);
    }
  });

  it('helm uninstall leaves the CRDs and every pipeline, run and model', async () => {
    const namespace = await cluster.createNamespace('uninstall');
    const release = `keep-${namespace.slice(-6)}`;
    const kube = ['--namespace', namespace, '--kubeconfig', cluster.kubeconfigPath];
    // Scoped to its namespace and without the cluster-wide admission policy: other files share this API server.
    const installed = await helm.run(['install', release, CHART_DIR, ...kube, '--set', `watchNamespaces={${namespace}}`, '--set', 'promotion.guard.enabled=false']);
    assert.equal(installed.code, 0, installed.stderr);
    await cluster.kubectlOk(['-n', namespace, 'apply', '-f', join(ROOT, 'manifests', 'examples', 'diamond.yaml')]);
    assert.notEqual((await cluster.kubectlOk(['-n', namespace, 'get', 'deployments', '-o', 'name'])).trim(), '', 'the release made its Deployments');
    const uninstalled = await helm.run(['uninstall', release, ...kube]);
    assert.equal(uninstalled.code, 0, uninstalled.stderr);
    const left = await cluster.kubectlOk(['get', 'crd', 'pipelines.ferry.dev', 'pipelineruns.ferry.dev', 'modelversions.ferry.dev', '-o', 'name']);
    assert.equal(left.trim().split('\n').length, 3, left);
    const pipelines = await cluster.kubectlOk(['-n', namespace, 'get', 'pipelines', '-o', 'name']);
    assert.match(pipelines, /pipeline\.ferry\.dev\/diamond/);
    assert.equal((await cluster.kubectlOk(['-n', namespace, 'get', 'deployments', '-o', 'name'])).trim(), '', 'the release itself is gone');
  });
});

describe('the schema and the templates reject wrong values with clear messages', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['replicaCount: "two"', { replicaCount: 'two' }, /at '\/replicaCount': got string, want integer/],
    ['an unknown top-level key', { replicaCont: 2 }, /at '': additional properties 'replicaCont' not allowed/],
    ['an unknown nested key', { artifacts: { persistance: { size: '1Gi' } } }, /at '\/artifacts': additional properties 'persistance' not allowed/],
    ['a log level that does not exist', { operator: { logLevel: 'verbose' } }, /at '\/operator\/logLevel': value must be one of 'debug', 'info', 'warn', 'error'/],
    ['an https:// store', { artifacts: { store: 'https://bucket/x' } }, /at '\/artifacts\/store': 'https:\/\/bucket\/x' does not match pattern/],
    ['zero replicas', { replicaCount: 0 }, /at '\/replicaCount': minimum: got 0, want 1/],
    ['a namespace that is not a DNS label', { watchNamespaces: ['Team_A'] }, /at '\/watchNamespaces\/0': 'Team_A' does not match pattern/],
    ['two replicas without leader election', { replicaCount: 2, leaderElection: { enabled: false } }, /replicaCount above 1 needs leaderElection.enabled=true/],
    ['a file:// store without a volume', { artifacts: { persistence: { enabled: false } } }, /artifacts.persistence is disabled and no existingClaim is set: the artifact server would have no volume/],
    ['both an external and the in-chart database', { database: { external: { secretName: 'db' }, postgresql: { enabled: true } } }, /set either database.external.secretName or database.postgresql.enabled, not both/],
  ];
  for (const [name, values, message] of cases) {
    it(`rejects ${name}`, async () => {
      const result = await helm.tryTemplate({ values });
      assert.notEqual(result.code, 0, 'helm template should fail');
      assert.match(result.stderr, message);
    });
  }
});

describe('what the chart renders', () => {
  const render = async (values: Record<string, unknown> = {}, namespace = 'ferry-system') =>
    parseManifests(await helm.template({ release: 'ferry', namespace, values }));

  it('gives every object the app.kubernetes.io labels and the release namespace', async () => {
    for (const [name, values] of Object.entries(VALUE_SETS)) {
      for (const object of await render(values({ watch: ['team-a'] }))) {
        const labels = object.metadata.labels ?? {};
        for (const key of ['name', 'instance', 'version', 'part-of', 'managed-by']) {
          assert.ok(labels[`app.kubernetes.io/${key}`], `${name}: ${object.kind}/${object.metadata.name} lacks app.kubernetes.io/${key}`);
        }
        const clusterScoped = ['ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'].includes(object.kind);
        if (!clusterScoped && object.kind !== 'Role' && object.kind !== 'RoleBinding') {
          assert.equal(object.metadata.namespace, 'ferry-system', `${object.kind}/${object.metadata.name}`);
        }
      }
    }
  });

  it('runs the operator image as the agent too, with probes, a restricted security context and a spread', async () => {
    const objects = await render();
    const container = operatorContainer(objects);
    const env = envOf(objects);
    assert.equal(container.image, 'ferry:0.1.0');
    assert.equal(env.get('FERRY_AGENT_IMAGE'), container.image);
    assert.equal(env.get('FERRY_HTTP_PORT'), '8080');
    assert.deepEqual(container.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(container.livenessProbe?.httpGet, { path: '/healthz', port: 'http' });
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/readyz', port: 'http' });
    assert.equal(env.get('FERRY_LEADER_ELECTION'), 'true');
    assert.deepEqual(env.get('FERRY_LEASE_NAMESPACE'), { fieldRef: { fieldPath: 'metadata.namespace' } });
    assert.equal(env.get('FERRY_NAMESPACES'), '');
    const pod = podSpecOf(objects);
    assert.deepEqual(pod.securityContext?.seccompProfile, { type: 'RuntimeDefault' });
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.deepEqual(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    assert.deepEqual(pod.topologySpreadConstraints?.map((t) => [t.topologyKey, t.labelSelector?.matchLabels?.['app.kubernetes.io/component']]), [
      ['kubernetes.io/hostname', 'operator'],
      ['topology.kubernetes.io/zone', 'operator'],
    ]);
  });

  it('creates the artifact volume by default for the artifact server alone; the operator reaches the server with a signing key Secret', async () => {
    const objects = await render();
    const claim = one(objects, 'PersistentVolumeClaim', 'ferry-artifacts') as unknown as { spec: { accessModes: string[] } };
    assert.deepEqual(claim.spec.accessModes, ['ReadWriteOnce']);
    const env = envOf(objects);
    assert.equal(env.get('FERRY_ARTIFACT_STORE'), 'file:///var/lib/ferry/artifacts');
    assert.equal(env.get('FERRY_ARTIFACT_SERVER'), `http://ferry-artifacts.${NAMESPACE}.svc:8081`);
    assert.equal(env.get('FERRY_ARTIFACT_SIGNING_KEY_SECRET'), 'ferry-artifact-signing-key');
    assert.equal(podSpecOf(objects).volumes?.some((v) => v.persistentVolumeClaim), false, 'the operator mounts no artifact volume');
    const server = byKind(objects, 'Deployment').find((d) => d.metadata?.name === 'ferry-artifacts') as unknown as { spec: { template: { spec: { containers: Array<{ args: string[]; volumeMounts: Array<{ name: string; mountPath: string }> }>; volumes: Array<{ name: string; persistentVolumeClaim?: { claimName: string }; secret?: { secretName: string } }>; automountServiceAccountToken: boolean } } } };
    assert.ok(server, 'an artifact server Deployment');
    const serverPod = server.spec.template.spec;
    assert.deepEqual(serverPod.containers[0]?.args, ['artifact-server']);
    assert.equal(serverPod.automountServiceAccountToken, false);
    assert.deepEqual(serverPod.volumes.map((v) => v.persistentVolumeClaim?.claimName ?? v.secret?.secretName), ['ferry-artifacts', 'ferry-artifact-signing-key']);
    assert.ok(serverPod.containers[0]?.volumeMounts.some((m) => m.name === 'artifacts' && m.mountPath === '/var/lib/ferry/artifacts'));
    assert.ok(byKind(objects, 'Service').some((s) => s.metadata?.name === 'ferry-artifacts'));
    assert.equal(byKind(objects, 'Secret').length, 0, 'no key is rendered into the manifests: the operator makes it');
  });

  it('with an s3:// store: no volume, no artifact server, the endpoint and a credentials Secret for the operator only', async () => {
    const objects = await render({ artifacts: { store: 's3://ferry-artifacts/prod', s3: { endpoint: 'http://minio.storage.svc:9000', forcePathStyle: true, credentialsSecret: 'ferry-s3' } } });
    assert.equal(byKind(objects, 'PersistentVolumeClaim').length, 0);
    assert.equal(byKind(objects, 'Deployment').length, 1, 'no artifact server');
    const env = envOf(objects);
    assert.equal(env.get('FERRY_ARTIFACT_STORE'), 's3://ferry-artifacts/prod');
    assert.equal(env.get('FERRY_S3_ENDPOINT'), 'http://minio.storage.svc:9000');
    assert.equal(env.get('FERRY_S3_FORCE_PATH_STYLE'), 'true');
    assert.deepEqual(env.get('AWS_SECRET_ACCESS_KEY'), { secretKeyRef: { name: 'ferry-s3', key: 'AWS_SECRET_ACCESS_KEY' } });
  });

  it('ships NetworkPolicies: the artifact server takes only its port and opens nothing, PostgreSQL only the operator', async () => {
    type Policy = { metadata: { name: string }; spec: { policyTypes: string[]; ingress: Array<{ from?: unknown[]; ports: Array<{ port: number }> }>; egress?: unknown[] } };
    const objects = await render({ database: { postgresql: { enabled: true, password: 'p' } } });
    const policies = byKind(objects, 'NetworkPolicy') as unknown as Policy[];
    const byName = new Map(policies.map((p) => [p.metadata.name, p.spec]));
    assert.deepEqual([...byName.keys()].sort(), ['ferry', 'ferry-artifacts', 'ferry-postgresql']);
    assert.deepEqual(byName.get('ferry-artifacts')?.ingress.map((r) => r.ports.map((p) => p.port)), [[8081]]);
    assert.deepEqual(byName.get('ferry-artifacts')?.egress, [], 'the artifact server opens no connection');
    assert.deepEqual(byName.get('ferry-postgresql')?.ingress[0]?.from, [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ferry', 'app.kubernetes.io/instance': 'ferry', 'app.kubernetes.io/component': 'operator' } } }]);
    assert.equal(byKind(await render({ networkPolicy: { enabled: false } }), 'NetworkPolicy').length, 0);
  });

  it('uses no volume with a gs:// store, and mounts the key Secret', async () => {
    const objects = await render(VALUE_SETS['a gs:// store with a key Secret and an emulator endpoint']!({ watch: [] }));
    assert.equal(byKind(objects, 'PersistentVolumeClaim').length, 0);
    const env = envOf(objects);
    assert.equal(env.get('FERRY_ARTIFACT_STORE'), 'gs://ferry-artifacts/prod');
    assert.equal(env.get('FERRY_GCS_CREDENTIALS_SECRET'), 'ferry-gcs-key');
    assert.equal(env.get('FERRY_GCS_ENDPOINT'), 'http://fake-gcs.ferry-system.svc:4443');
    assert.equal(env.get('GOOGLE_APPLICATION_CREDENTIALS'), '/var/run/secrets/ferry/gcs/key.json');
    assert.equal(env.has('FERRY_ARTIFACT_SERVER'), false);
    assert.equal(byKind(objects, 'Deployment').length, 1, 'no artifact server');
    assert.ok(podSpecOf(objects).volumes?.some((v) => v.secret?.secretName === 'ferry-gcs-key'));
  });

  it('binds a ClusterRole cluster-wide by default, and only namespaced Roles with watchNamespaces', async () => {
    const cluster = await render({ rbac: { aggregateToDefaultRoles: false } });
    // ferry-promoter: the promote verb, for people; bound per namespace by whoever may promote there.
    assert.deepEqual(byKind(cluster, 'ClusterRole').map((o) => o.metadata.name).sort(), ['ferry', 'ferry-promoter']);
    assert.deepEqual(byKind(cluster, 'ClusterRoleBinding').map((o) => o.metadata.name), ['ferry']);
    assert.deepEqual(byKind(cluster, 'Role').map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort(), ['ferry-system/ferry-leader-election', 'ferry-system/ferry-signing-key']);

    const scoped = await render({ watchNamespaces: ['team-a', 'team-b'], rbac: { aggregateToDefaultRoles: false } });
    assert.deepEqual(byKind(scoped, 'ClusterRole').map((o) => o.metadata.name), ['ferry-promoter'], 'no ClusterRole for the operator');
    assert.deepEqual(byKind(scoped, 'ClusterRoleBinding'), []);
    assert.deepEqual(byKind(scoped, 'Role').map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort(), [
      'ferry-system/ferry-leader-election', 'ferry-system/ferry-signing-key', 'team-a/ferry', 'team-b/ferry',
    ]);
    assert.deepEqual(byKind(scoped, 'RoleBinding').map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort(), [
      'ferry-system/ferry-leader-election', 'ferry-system/ferry-signing-key', 'team-a/ferry', 'team-b/ferry',
    ]);
    assert.equal(envOf(scoped).get('FERRY_NAMESPACES'), 'team-a,team-b');
  });

  it('never grants list or watch on Secrets, or any verb on cluster-scoped resources, to the operator', async () => {
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const objects = await render({ rbac: { aggregateToDefaultRoles: false } });
    const rules = [...byKind(objects, 'ClusterRole'), ...byKind(objects, 'Role')].flatMap((o) => (o as unknown as { rules: Rule[] }).rules);
    for (const rule of rules) {
      assert.ok(!rule.verbs.includes('*') && !rule.resources.includes('*') && !rule.apiGroups.includes('*'), `wildcard in ${JSON.stringify(rule)}`);
      // Secrets: read by name, and the one signing key created in the release namespace.
      if (rule.resources.includes('secrets')) assert.ok(rule.verbs.length === 1 && (rule.verbs[0] === 'get' || rule.verbs[0] === 'create'), JSON.stringify(rule));
      for (const resource of ['namespaces', 'nodes', 'customresourcedefinitions', 'clusterroles', 'clusterrolebindings']) {
        assert.ok(!rule.resources.includes(resource), `operator may touch ${resource}`);
      }
    }
    const lease = rules.find((r) => r.resources.includes('leases') && r.verbs.includes('update'));
    assert.deepEqual(lease?.resourceNames, ['ferry'], 'the Lease is renewed by name only');
    assert.equal(envOf(objects).get('FERRY_LEASE_NAME'), 'ferry');
    const noSecrets = await render({ rbac: { readImagePullSecrets: false }, artifacts: { store: 'gs://bucket/prefix' } });
    const secretRules = [...byKind(noSecrets, 'ClusterRole'), ...byKind(noSecrets, 'Role')]
      .flatMap((o) => (o as unknown as { rules: Rule[] }).rules).filter((r) => r.resources.includes('secrets'));
    assert.deepEqual(secretRules, []);
  });

  it('points FERRY_DATABASE_URL at an external Secret or at the in-chart PostgreSQL', async () => {
    assert.equal(envOf(await render()).has('FERRY_DATABASE_URL'), false);
    const external = await render({ database: { external: { secretName: 'ferry-db', secretKey: 'dsn' } } });
    assert.deepEqual(envOf(external).get('FERRY_DATABASE_URL'), { secretKeyRef: { name: 'ferry-db', key: 'dsn' } });
    assert.equal(byKind(external, 'StatefulSet').length, 0);
    const embedded = await render({ database: { postgresql: { enabled: true, password: 'p@ss/word' } } });
    assert.deepEqual(envOf(embedded).get('FERRY_DATABASE_URL'), { secretKeyRef: { name: 'ferry-postgresql', key: 'url' } });
    one(embedded, 'StatefulSet', 'ferry-postgresql');
    const secret = one(embedded, 'Secret', 'ferry-postgresql') as unknown as { stringData: Record<string, string> };
    assert.equal(secret.stringData.url, 'postgresql://ferry:p%40ss%2Fword@ferry-postgresql.ferry-system.svc:5432/ferry?sslmode=disable');
  });

  it('renders a ServiceMonitor on the metrics Service port only when asked', async () => {
    assert.equal(byKind(await render(), 'ServiceMonitor').length, 0);
    const objects = await render({ metrics: { serviceMonitor: { enabled: true } } });
    const monitor = one(objects, 'ServiceMonitor') as unknown as { spec: { endpoints: Array<{ port: string; path: string }> } };
    const service = one(objects, 'Service', 'ferry-metrics') as unknown as { spec: { ports: Array<{ name: string; targetPort: string }> } };
    assert.equal(monitor.spec.endpoints[0]?.port, service.spec.ports[0]?.name);
    assert.equal(service.spec.ports[0]?.targetPort, 'http');
    assert.equal(monitor.spec.endpoints[0]?.path, '/metrics');
  });
});
