// Memory benchmark for the artifact stores (not a test): streams a 1 GiB file through putBlob
// into a file:// store and a gs:// store on fake-gcs-server, reads it back to a file verifying
// its sha256, and prints peak RSS and throughput. Goal: peak RSS under 150 MiB for 1 GiB.
//
// Usage: bash scripts/with-node.sh node bench/artifact-memory.ts [size MiB, default 1024]
// Each store runs in a child process of its own so that its peak RSS is its own.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GcsArtifactStore } from '../operator/artifacts/gcs-store.ts';
import { openArtifactStore } from '../operator/artifacts/open.ts';
import type { ArtifactStore } from '../operator/artifacts/store.ts';
import { startFakeGcs, type FakeGcs } from '../test/harness/fake-gcs.ts';

const MiB = 1024 * 1024;
const self = fileURLToPath(import.meta.url);

interface PhaseResult {
  op: 'put' | 'read';
  seconds: number;
  maxRssMiB: number;
  baselineRssMiB: number;
  uri: string;
}

interface StoreResult {
  store: string;
  sizeBytes: number;
  put: PhaseResult;
  read: PhaseResult;
}

if (process.argv[2] === '--child') {
  const [, , , op = '', storeUri = '', target = '', expectedDigest = '', gcsEndpoint = ''] = process.argv;
  if (op !== 'put' && op !== 'read') throw new Error(`unknown phase ${op}`);
  const result = await runPhase(op, storeUri, target, expectedDigest, gcsEndpoint);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  await main(Number(process.argv[2] ?? 1024));
}

async function main(sizeMiB: number): Promise<void> {
  if (!Number.isInteger(sizeMiB) || sizeMiB <= 0) throw new Error(`size must be a positive number of MiB, got ${process.argv[2]}`);
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-'));
  let gcs: FakeGcs | undefined;
  try {
    const input = join(work, 'input.bin');
    const started = performance.now();
    const digest = await writeRandomFile(input, sizeMiB * MiB);
    log(`wrote ${sizeMiB} MiB to ${input} in ${seconds(started).toFixed(1)} s (${digest})`);

    const results: StoreResult[] = [];
    results.push(await runStore(pathToFileURL(join(work, 'store')).href, input, digest, ''));
    try {
      gcs = await startFakeGcs({ buckets: ['ferry-bench'] });
    } catch (err) {
      log(`skipping gs://: fake-gcs-server did not start: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (gcs !== undefined) results.push(await runStore('gs://ferry-bench/bench', input, digest, gcs.endpoint));

    console.log(`\n${sizeMiB} MiB through putBlob, then read back to a file with its sha256 verified; each phase in a fresh process.`);
    console.log('store                    phase   MiB/s   baseline RSS   peak RSS');
    for (const r of results) {
      for (const phase of [r.put, r.read]) {
        console.log([
          r.store.padEnd(24),
          phase.op.padEnd(5),
          (r.sizeBytes / MiB / phase.seconds).toFixed(1).padStart(7),
          `${phase.baselineRssMiB.toFixed(0)} MiB`.padStart(14),
          `${phase.maxRssMiB.toFixed(0)} MiB`.padStart(10),
          phase.maxRssMiB < 150 ? ' ok (< 150 MiB)' : ' OVER 150 MiB',
        ].join(' '));
      }
    }
  } finally {
    await gcs?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes `size` random bytes 1 MiB at a time and returns their digest. */
async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(Readable.from((function* () {
    for (let written = 0; written < size; written += MiB) {
      const chunk = randomBytes(Math.min(MiB, size - written));
      hash.update(chunk);
      yield chunk;
    }
  })()), createWriteStream(path));
  return `sha256:${hash.digest('hex')}`;
}

async function runStore(storeUri: string, input: string, digest: string, gcsEndpoint: string): Promise<StoreResult> {
  log(`putBlob into ${storeUri} ...`);
  const put = await runChild(['put', storeUri, input, digest, gcsEndpoint]);
  log(`reading back ${put.uri} ...`);
  const read = await runChild(['read', storeUri, put.uri, digest, gcsEndpoint]);
  await openStore(storeUri, gcsEndpoint).delete(put.uri);
  const label = storeUri.startsWith('file:') ? 'file://' : storeUri;
  return { store: label, sizeBytes: (await stat(input)).size, put, read };
}

async function runChild(args: string[]): Promise<PhaseResult> {
  const child = spawn(process.execPath, [self, '--child', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`benchmark phase ${args.join(' ')} failed (exit ${code}): ${stdout.trim()}`);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '') as PhaseResult;
}

function openStore(storeUri: string, gcsEndpoint: string): ArtifactStore {
  if (gcsEndpoint === '') return openArtifactStore(storeUri);
  // FERRY_BENCH_GCS_CHUNK_MIB compares upload chunk sizes (0 = one streaming request).
  const chunkMiB = process.env.FERRY_BENCH_GCS_CHUNK_MIB;
  return new GcsArtifactStore(storeUri, {
    apiEndpoint: gcsEndpoint,
    ...(chunkMiB !== undefined ? { uploadChunkBytes: Number(chunkMiB) * MiB } : {}),
  });
}

async function runPhase(op: 'put' | 'read', storeUri: string, target: string, expectedDigest: string, gcsEndpoint: string): Promise<PhaseResult> {
  const store = openStore(storeUri, gcsEndpoint);
  const baselineRssMiB = process.memoryUsage().rss / MiB;
  const started = performance.now();
  let uri: string;
  if (op === 'put') {
    const stored = await store.putBlob('bench', createReadStream(target));
    if (stored.digest !== expectedDigest) throw new Error(`putBlob into ${storeUri} returned ${stored.digest}; expected ${expectedDigest}`);
    uri = stored.uri;
  } else {
    uri = target;
    const hash = createHash('sha256');
    const output = join(tmpdir(), `ferry-bench-readback-${process.pid}`);
    try {
      await pipeline(
        await store.read(uri),
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            hash.update(chunk);
            callback(null, chunk);
          },
        }),
        createWriteStream(output),
      );
    } finally {
      await rm(output, { force: true });
    }
    const readDigest = `sha256:${hash.digest('hex')}`;
    if (readDigest !== expectedDigest) throw new Error(`read back ${uri}: digest ${readDigest}, expected ${expectedDigest}`);
  }
  // resourceUsage().maxRSS is in KiB.
  return { op, seconds: seconds(started), maxRssMiB: process.resourceUsage().maxRSS / 1024, baselineRssMiB, uri };
}

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}
