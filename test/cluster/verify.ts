// The local cluster's smoke test, run by `cli.ts up` and the cluster test: Pods from the
// locally built probe image, pulled from the local registry. One writes a file to an
// emptyDir and exits 0; one reaches the API server through the `kubernetes` Service
// (kube-proxy's iptables rules) with its service-account token, verifying TLS with the
// projected kube-root-ca.crt; one reaches another Pod through a ClusterIP Service (DNAT, then
// routed across the bridge). Their logs are read back through the API server and kubelet.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from './cluster.ts';

export interface SmokePod { name: string; phase: string; log: string }
export interface VerifyResult { write: SmokePod; api: SmokePod; service: SmokePod; durationMs: number }

const timeoutMs = 120_000;
const label = 'app.kubernetes.io/part-of=ferry-smoke';

interface SmokeManifest { metadata: { name: string; namespace: string; labels: Record<string, string> }; [key: string]: unknown }

export async function verifyCluster(cluster: LocalCluster, log: (line: string) => void = () => {}): Promise<VerifyResult> {
  const started = Date.now();
  const suffix = randomBytes(3).toString('hex');
  const write = `ferry-smoke-write-${suffix}`;
  const api = `ferry-smoke-api-${suffix}`;
  const server = `ferry-smoke-server-${suffix}`;
  const client = `ferry-smoke-client-${suffix}`;
  const manifest = [
    pod(write, cluster.images.probe, ['write', '/data/hello.txt', 'hello from a Ferry Pod'], false),
    pod(api, cluster.images.probe, ['api'], true),
    withLabel(pod(server, cluster.images.probe, ['serve', '8080'], false), server),
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: server, namespace: 'default', labels: { 'app.kubernetes.io/part-of': 'ferry-smoke' } },
      spec: { selector: { 'ferry.dev/smoke': server }, ports: [{ port: 80, targetPort: 8080 }] },
    },
  ].map((p) => JSON.stringify(p)).join('\n');
  const applied = await cluster.kubectl(['apply', '-f', '-'], manifest);
  if (applied.code !== 0) throw new Error(`creating the smoke-test Pods failed: ${applied.stderr.trim()}`);
  try {
    const clusterIp = (await cluster.kubectl(['get', 'service', server, '-n', 'default', '-o', 'jsonpath={.spec.clusterIP}'])).stdout.trim();
    const created = await cluster.kubectl(['apply', '-f', '-'], JSON.stringify(pod(client, cluster.images.probe, ['get', `http://${clusterIp}/`], false)));
    if (created.code !== 0) throw new Error(`creating the smoke-test client Pod failed: ${created.stderr.trim()}`);
    const [writePod, apiPod, clientPod] = await Promise.all([finish(cluster, write), finish(cluster, api), finish(cluster, client)]);
    log(`smoke test: ${[writePod, apiPod, clientPod].map((p) => p.log.trim()).join(' | ')}`);
    return { write: writePod, api: apiPod, service: clientPod, durationMs: Date.now() - started };
  } finally {
    await cluster.kubectl(['delete', 'pods,services', '-n', 'default', '-l', label, '--wait=false', '--ignore-not-found']);
  }
}

function withLabel(p: SmokeManifest, value: string): SmokeManifest {
  p.metadata.labels['ferry.dev/smoke'] = value;
  return p;
}

function pod(name: string, image: string, args: string[], automountToken: boolean): SmokeManifest {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { 'app.kubernetes.io/part-of': 'ferry-smoke' } },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 0,
      automountServiceAccountToken: automountToken,
      containers: [{
        name: 'probe',
        image,
        imagePullPolicy: 'IfNotPresent',
        args,
        volumeMounts: [{ name: 'data', mountPath: '/data' }],
      }],
      volumes: [{ name: 'data', emptyDir: {} }],
    },
  };
}

async function finish(cluster: LocalCluster, name: string): Promise<SmokePod> {
  const deadline = Date.now() + timeoutMs;
  let phase = 'Unknown';
  for (;;) {
    const got = await cluster.kubectl(['get', 'pod', name, '-n', 'default', '-o', 'jsonpath={.status.phase}']);
    phase = got.code === 0 ? got.stdout.trim() || 'Pending' : 'Unknown';
    if (phase === 'Succeeded' || phase === 'Failed' || Date.now() > deadline) break;
    await sleep(250);
  }
  const logs = await cluster.kubectl(['logs', name, '-n', 'default']);
  const log = logs.code === 0 ? logs.stdout : `(kubectl logs failed: ${logs.stderr.trim()})`;
  if (phase !== 'Succeeded') {
    const described = await cluster.kubectl(['describe', 'pod', name, '-n', 'default']);
    throw new Error(`smoke-test Pod ${name} ended ${phase} (wanted Succeeded); log:\n${log}\n${described.stdout}`);
  }
  return { name, phase, log };
}
