// Measures the step agent's peak memory and throughput moving a large artifact: `ferry agent
// publish-outputs` uploads a generated file (1 GiB by default), then `ferry agent fetch-inputs`
// downloads and verifies it, each as its own process, as in a step Pod. Two ways, side by side
// in one run: straight into a file:// store (the agent opens the store), and through signed
// URLs of an artifact server (`ferry artifact-server`, its own process), as step Pods do now.
// Usage: node bench/agent-memory.ts [--mib=1024]
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { HttpArtifactStore } from '../operator/artifacts/http-store.ts';
import { freePort } from '../test/harness/ports.ts';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' } } });
const mib = Number(values.mib);
const root = join(import.meta.dirname, '..');

async function writeRandomish(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  const block = Buffer.alloc(1024 * 1024);
  for (let written = 0, i = 0; written < bytes; written += block.length, i++) {
    block.writeUInt32LE(i, 0); // vary blocks so nothing deduplicates
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

async function agent(phase: string, env: Record<string, string>): Promise<{ seconds: number; maxRssKiB: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [join(root, 'operator/main.ts'), 'agent', phase], {
    // NODE_OPTIONS as step Pods set it (pod-spec.ts).
    env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1', ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`agent ${phase} exited ${code}: ${log}`);
  const line = log.split('\n').map((l) => { try { return JSON.parse(l) as { msg?: string; maxRssKiB?: number }; } catch { return {}; } }).find((l) => l.msg === 'agent finished');
  return { seconds: (performance.now() - started) / 1000, maxRssKiB: line?.maxRssKiB ?? NaN };
}

interface Phase { seconds: number; maxRssKiB: number }

/** Publishes `big` and fetches it back, the agent given a store root (direct) or signed URLs. */
async function moveThrough(work: string, mode: 'direct' | 'signed', store: HttpArtifactStore | undefined): Promise<{ publish: Phase; fetch: Phase; size: number; digest: string }> {
  const root = `file://${join(work, 'store')}`;
  const expiresAt = new Date(Date.now() + 3600_000);
  const key = `bench/runs/${mode}/publish/1`;
  const common: Record<string, string> = mode === 'direct' ? { FERRY_ARTIFACT_STORE: root, FERRY_NAMESPACE: 'bench' } : {};
  const outputs = mode === 'direct'
    ? [{ name: 'big', type: 'dataset' }]
    : [{ name: 'big', type: 'dataset', uri: store!.uriFor(`${key}/big.tar`), url: store!.createGrant(`${key}/big.tar`, expiresAt).url }];
  const termination = join(work, `termination-${mode}`);
  const publish = await agent('publish-outputs', {
    ...common, FERRY_DIR: join(work, 'producer'), FERRY_OUTPUTS: JSON.stringify(outputs), FERRY_TERMINATION_LOG: termination,
    ...(mode === 'signed' ? { FERRY_REPORT: JSON.stringify({ uri: store!.uriFor(`${key}/report.json`), url: store!.createGrant(`${key}/report.json`, expiresAt).url }) } : {}),
  });
  const report = JSON.parse(await readFile(termination, 'utf8')) as { report: { outputs: Array<{ uri: string; digest: string; size: number }> } };
  const output = report.report.outputs[0]!;
  const input = { name: 'big', uri: output.uri, digest: output.digest, ...(mode === 'signed' ? { url: store!.readGrant(output.uri, expiresAt).url } : {}) };
  const consumer = join(work, `consumer-${mode}`);
  const fetch = await agent('fetch-inputs', { ...common, FERRY_DIR: consumer, FERRY_INPUTS: JSON.stringify([input]) });
  const fetched = await stat(join(consumer, 'inputs', 'big'));
  if (fetched.size !== mib * 1024 * 1024) throw new Error(`${mode}: fetched ${fetched.size} bytes`);
  await rm(consumer, { recursive: true, force: true });
  return { publish, fetch, size: output.size, digest: output.digest };
}

const work = await mkdtemp(join(tmpdir(), 'ferry-bench-agent-'));
const key = Buffer.from('b'.repeat(64));
await writeFile(join(work, 'signing-key'), key);
const port = await freePort();
const server = spawn(process.execPath, [join(root, 'operator/main.ts'), 'artifact-server'], {
  env: { ...process.env, FERRY_ARTIFACT_STORE: `file://${join(work, 'store')}`, FERRY_ARTIFACT_SERVER_LISTEN: `127.0.0.1:${port}`, FERRY_ARTIFACT_SIGNING_KEY_FILE: join(work, 'signing-key'), FERRY_LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
try {
  const serverUrl = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (await fetch(`${serverUrl}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 100) throw new Error('the artifact server did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const store = new HttpArtifactStore(`file://${join(work, 'store')}`, serverUrl, key);
  await mkdir(join(work, 'producer', 'outputs'), { recursive: true });
  await writeRandomish(join(work, 'producer', 'outputs', 'big'), mib * 1024 * 1024);
  const direct = await moveThrough(work, 'direct', undefined);
  const signed = await moveThrough(work, 'signed', store);
  if (direct.digest !== signed.digest) throw new Error(`the two ways stored different bytes: ${direct.digest} and ${signed.digest}`);
  const rate = (s: number) => (mib / s).toFixed(0);
  console.log(`artifact: ${mib} MiB (tar ${Math.round(direct.size / 1024 / 1024)} MiB, ${direct.digest.slice(0, 19)}…), fetched back and digest verified both ways`);
  console.log('| way | phase | seconds | MiB/s | peak agent RSS (MiB) |');
  console.log('|---|---|---|---|---|');
  for (const [way, result] of [['direct store', direct], ['signed URLs', signed]] as const) {
    for (const [phase, p] of [['publish-outputs', result.publish], ['fetch-inputs', result.fetch]] as const) {
      console.log(`| ${way} | ${phase} | ${p.seconds.toFixed(1)} | ${rate(p.seconds)} | ${(p.maxRssKiB / 1024).toFixed(0)} |`);
    }
  }
  const total = (r: typeof direct) => r.publish.seconds + r.fetch.seconds;
  console.log(`signed URLs / direct, time to move it both ways: ${(total(signed) / total(direct)).toFixed(2)}x`);
} finally {
  server.kill('SIGTERM');
  await once(server, 'exit').catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
