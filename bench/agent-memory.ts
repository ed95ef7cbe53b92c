// Measures the step agent's peak memory moving a large artifact: `ferry agent publish-outputs`
// uploads a generated file (1 GiB by default) to a file:// store, then `ferry agent
// fetch-inputs` downloads and verifies it, each as its own process, as in a step Pod.
// Usage: node bench/agent-memory.ts [--mib=1024]
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';

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
    env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`agent ${phase} exited ${code}: ${log}`);
  const line = log.split('\n').map((l) => { try { return JSON.parse(l) as { msg?: string; maxRssKiB?: number }; } catch { return {}; } }).find((l) => l.msg === 'agent finished');
  return { seconds: (performance.now() - started) / 1000, maxRssKiB: line?.maxRssKiB ?? NaN };
}

const work = await mkdtemp(join(tmpdir(), 'ferry-bench-agent-'));
try {
  const store = `file://${join(work, 'store')}`;
  await mkdir(join(work, 'producer', 'outputs'), { recursive: true });
  await writeRandomish(join(work, 'producer', 'outputs', 'big'), mib * 1024 * 1024);
  const common = { FERRY_ARTIFACT_STORE: store };
  const publish = await agent('publish-outputs', {
    ...common, FERRY_DIR: join(work, 'producer'), FERRY_OUTPUTS: JSON.stringify([{ name: 'big', type: 'dataset' }]),
    FERRY_TERMINATION_LOG: join(work, 'termination'),
  });
  const report = JSON.parse(await readFile(join(work, 'termination'), 'utf8')) as { report: { outputs: Array<{ uri: string; digest: string; size: number }> } };
  const output = report.report.outputs[0]!;
  const fetch = await agent('fetch-inputs', {
    ...common, FERRY_DIR: join(work, 'consumer'), FERRY_INPUTS: JSON.stringify([{ name: 'big', uri: output.uri, digest: output.digest }]),
  });
  const fetched = await stat(join(work, 'consumer', 'inputs', 'big'));
  const rate = (s: number) => (mib / s).toFixed(0);
  console.log(`artifact: ${mib} MiB (tar ${Math.round(output.size / 1024 / 1024)} MiB, ${output.digest.slice(0, 19)}…), fetched ${Math.round(fetched.size / 1024 / 1024)} MiB, digest verified`);
  console.log('| phase | seconds | MiB/s | peak RSS (MiB) |');
  console.log('|---|---|---|---|');
  console.log(`| publish-outputs | ${publish.seconds.toFixed(1)} | ${rate(publish.seconds)} | ${(publish.maxRssKiB / 1024).toFixed(0)} |`);
  console.log(`| fetch-inputs | ${fetch.seconds.toFixed(1)} | ${rate(fetch.seconds)} | ${(fetch.maxRssKiB / 1024).toFixed(0)} |`);
} finally {
  await rm(work, { recursive: true, force: true });
}
