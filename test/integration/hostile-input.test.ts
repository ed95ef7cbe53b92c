// What one tenant can choose to hand the operator, against the real API server, the real
// operator (its artifact server in-process) and real agent processes: a reproduceFrom at a
// 900 MB object, a metrics.json of 50 MB with 10^5 keys, a registry whose token is 1 GiB and
// one that never answers. Each ends in a clear condition, the operator's peak RSS stays far
// below its 1 GiB limit, and another namespace's runs finish meanwhile.
import assert from 'node:assert/strict';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { pipeline, pipelineRun, step } from '../builders.ts';
import { connect, eventually, waitForRun, type TestCluster } from '../harness/cluster.ts';
import { startOperator, type OperatorProcess } from '../harness/operator-process.ts';
import { ProcessKubelet } from '../harness/process-kubelet.ts';

const AGENT_IMAGE = 'ferry:test';
const OPERATOR_MEMORY_LIMIT_MIB = 1024; // the chart's default limit
const sh = (script: string) => ['sh', '-c', script];

let cluster: TestCluster;
let tenant: string;
let bystander: string;
let storeDir: string;
let operator: OperatorProcess;
let kubelets: ProcessKubelet[] = [];
const servers: Server[] = [];
const sockets = new Set<Socket>();
let hugeToken: string;
let silent: string;

/** A server on 127.0.0.1 for the test's own hostile registries; every socket is closed after. */
async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  server.on('connection', (socket) => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  servers.push(server);
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  cluster = connect();
  tenant = await cluster.createNamespace('hostile');
  bystander = await cluster.createNamespace('bystander');
  storeDir = join(tmpdir(), 'ferry-test-artifacts', tenant);
  // A registry that asks for a token, and whose token service streams 1 GiB of JSON.
  hugeToken = await listen((req, res) => {
    if (req.url?.startsWith('/token')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"token":"');
      const chunk = Buffer.alloc(1 << 20, 0x61);
      let sent = 0;
      const pump = () => {
        while (sent < 1024 && res.write(chunk)) sent++;
        if (sent < 1024) res.once('drain', pump);
        else res.end('"}');
      };
      res.on('close', () => { sent = 1024; });
      pump();
      return;
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${hugeToken}/token",service="registry"` }).end();
  });
  // A registry that accepts connections and never answers.
  silent = await listen(() => undefined);
  operator = startOperator({
    kubeconfigPath: cluster.kubeconfigPath, namespaces: [tenant, bystander], leaseName: 'ferry', leaseNamespace: tenant,
    env: { FERRY_AGENT_IMAGE: AGENT_IMAGE, FERRY_INSECURE_REGISTRIES: `${hugeToken},${silent}`, FERRY_LOG_LEVEL: 'info' },
  });
  await operator.waitForLog((l) => l.msg === 'controller started');
  kubelets = [tenant, bystander].map((ns) => new ProcessKubelet(cluster.client, ns, { agentImage: AGENT_IMAGE }).start());
});

after(async () => {
  await Promise.all(kubelets.map((k) => k.stop()));
  await operator?.stop();
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await cluster?.cleanup();
  await rm(storeDir, { recursive: true, force: true });
});

/** The operator's peak resident set (VmHWM), from /proc. */
async function operatorPeakRssMiB(): Promise<number> {
  const status = await readFile(`/proc/${operator.pid}/status`, 'utf8');
  const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
  return Math.round(kib / 1024);
}

const conditionOf = (run: PipelineRun) => run.status?.conditions?.find((c) => c.type === 'Succeeded');

describe('hostile input from one tenant', () => {
  it('ends each in a clear condition, keeps the operator small, and does not hold up another namespace', async () => {
    // 900 MB in the tenant's own part of the store (sparse: the size is what counts).
    await mkdir(join(storeDir, tenant, 'outputs'), { recursive: true });
    const huge = await open(join(storeDir, tenant, 'outputs', 'huge'), 'w');
    await huge.truncate(900 * 1024 * 1024);
    await huge.close();
    const hugeUri = `file://${join(storeDir, tenant, 'outputs', 'huge')}`;

    const keys = 100_000;
    const valueLength = Math.ceil((50 * 1024 * 1024) / keys);
    await cluster.client.create(PIPELINES, tenant, pipeline({ name: 'metrics', namespace: tenant, steps: [
      step('flood', { command: sh(`awk 'BEGIN { v = sprintf("%${valueLength}s", ""); gsub(/ /, "1", v); printf "{"; for (i = 0; i < ${keys}; i++) printf "%s\\"k%d\\": %s", (i ? "," : ""), i, v; printf "}" }' > /ferry/outputs/metrics.json`) }),
    ] }));
    for (const [name, host] of [['token', hugeToken], ['silent', silent]] as const) {
      await cluster.client.create(PIPELINES, tenant, pipeline({ name, namespace: tenant, steps: [step('s', { image: `${host}/ferry/step:1.0` })] }));
    }
    await cluster.client.create(PIPELINES, bystander, pipeline({ name: 'quick', namespace: bystander, steps: [step('a', { command: sh('true') })] }));

    const started = Date.now();
    await cluster.client.create(PIPELINE_RUNS, tenant, pipelineRun({ name: 'reproduce-huge', namespace: tenant, reproduceFrom: { configuration: { uri: hugeUri, digest: `sha256:${'0'.repeat(64)}` } } }));
    await cluster.client.create(PIPELINE_RUNS, tenant, pipelineRun({ name: 'metrics-flood', namespace: tenant, pipeline: 'metrics', cachePolicy: 'Disabled' }));
    await cluster.client.create(PIPELINE_RUNS, tenant, pipelineRun({ name: 'token-1g', namespace: tenant, pipeline: 'token' }));
    await cluster.client.create(PIPELINE_RUNS, tenant, pipelineRun({ name: 'silent-registry', namespace: tenant, pipeline: 'silent' }));
    const quick = ['quick-1', 'quick-2', 'quick-3'];
    for (const name of quick) await cluster.client.create(PIPELINE_RUNS, bystander, pipelineRun({ name, namespace: bystander, pipeline: 'quick', cachePolicy: 'Disabled' }));

    const durations: Record<string, number> = {};
    for (const name of quick) {
      const run = await waitForRun(cluster, bystander, name, { timeoutMs: 120_000, operatorLogs: operator.logs });
      assert.equal(run.status?.phase, 'Succeeded', `${name}: ${conditionOf(run)?.message}`);
      durations[name] = Date.parse(run.status!.finishedAt!) - Date.parse(run.metadata.creationTimestamp!);
    }

    const reproduced = await waitForRun(cluster, tenant, 'reproduce-huge', { timeoutMs: 60_000, operatorLogs: operator.logs });
    assert.equal(conditionOf(reproduced)?.reason, 'ReproductionSourceTooLarge');
    assert.match(conditionOf(reproduced)?.message ?? '', /is larger than the limit of 4194304 bytes/);

    const flooded = await waitForRun(cluster, tenant, 'metrics-flood', { timeoutMs: 120_000, operatorLogs: operator.logs });
    assert.equal(flooded.status?.phase, 'Failed');
    assert.match(flooded.status?.steps?.[0]?.message ?? '', /metrics\.json is \d+ bytes, more than the limit of 1048576/);

    const token = await waitForRun(cluster, tenant, 'token-1g', { timeoutMs: 60_000, operatorLogs: operator.logs });
    assert.equal(conditionOf(token)?.reason, 'ImageResolutionFailed');
    assert.match(conditionOf(token)?.message ?? '', /larger than the limit of 1 MiB/);

    const waiting = await eventually('the silent registry named in a condition', async () => {
      const run = await cluster.client.get<PipelineRun>(PIPELINE_RUNS, tenant, 'silent-registry');
      return conditionOf(run)?.reason === 'ImageResolutionFailed' ? run : undefined;
    }, 90_000, 500);
    assert.equal(conditionOf(waiting)?.status, 'Unknown', 'an unreachable registry is waited for, not a failure');
    assert.match(conditionOf(waiting)?.message ?? '', new RegExp(`registry ${silent.replace('.', '\\.')} unreachable`));

    const peak = await operatorPeakRssMiB();
    console.log(`[hostile-input] operator peak RSS ${peak} MiB (limit ${OPERATOR_MEMORY_LIMIT_MIB} MiB); bystander run durations ${JSON.stringify(durations)} ms; all hostile runs ended in ${Date.now() - started} ms`);
    // Half the limit: reading the 900 MB object, the 1 GiB token or the 50 MB report would pass it.
    assert.ok(peak < OPERATOR_MEMORY_LIMIT_MIB / 2, `operator peak RSS ${peak} MiB`);
  });
});
