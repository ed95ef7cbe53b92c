// Starts a real S3 server for the s3:// artifact-store tests: SeaweedFS (`weed server -s3`,
// built once by test/tools/build-seaweedfs.sh), its master, volume server, filer and S3 gateway
// in one process on 127.0.0.1, with a throwaway data dir and one access key that may do anything.
import { runBuildScript } from './binaries.ts';
import { spawnServerProcess } from './server-process.ts';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { freePorts } from './ports.ts';

export interface S3Server {
  /** e.g. http://127.0.0.1:41234 (no trailing slash), to be used with path-style requests. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** A client of the server with the admin key (path-style). */
  client(): S3Client;
  /** Creates a bucket (idempotent: an existing bucket is fine). */
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface StartS3Options {
  /** Buckets to create before returning. */
  buckets?: string[];
  log?: (line: string) => void;
}

const buildScript = fileURLToPath(new URL('../tools/build-seaweedfs.sh', import.meta.url));
/** Master election, the volume server's first heartbeat and the filer come up in a few seconds. */
const startupTimeoutMs = 60_000;
const stopGraceMs = 10_000;
const region = 'us-east-1';
/** Where the readiness probe writes: a bucket of its own, so no test ever lists it. */
const probeBucket = 'ferry-harness-probe';

/** Builds (if needed) SeaweedFS and returns the path of the `weed` binary. */
export async function ensureSeaweedBinary(): Promise<string> {
  return join(await runBuildScript(buildScript), 'weed');
}

export async function startS3(options: StartS3Options = {}): Promise<S3Server> {
  const log = options.log ?? (() => {});
  const bin = await ensureSeaweedBinary();
  const workDir = await mkdtemp(join(tmpdir(), 'ferry-s3-'));
  const dataDir = join(workDir, 'data');
  await mkdir(dataDir);
  const logPath = join(workDir, 'weed.log');
  const accessKeyId = `ferry${randomBytes(8).toString('hex')}`;
  const secretAccessKey = randomBytes(24).toString('base64url');
  const configPath = join(workDir, 's3.json');
  await writeFile(configPath, JSON.stringify({
    identities: [{ name: 'ferry-test', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ['Admin', 'Read', 'List', 'Tagging', 'Write'] }],
  }), { mode: 0o600 });
  // Every gRPC port is given too: SeaweedFS's default (HTTP port + 10000) can be taken, or past 65535.
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc] = await freePorts(8) as [number, number, number, number, number, number, number, number];
  const endpoint = `http://127.0.0.1:${s3}`;

  const proc = spawnServerProcess(bin, [
    '-logtostderr=true', 'server',
    '-ip=127.0.0.1', '-ip.bind=127.0.0.1', `-dir=${dataDir}`,
    `-master.port=${master}`, `-master.port.grpc=${masterGrpc}`,
    // Small volumes, so a test run allocates little disk; no phoning home.
    '-master.volumeSizeLimitMB=256', '-master.telemetry=false',
    `-volume.port=${volume}`, `-volume.port.grpc=${volumeGrpc}`, '-volume.max=16',
    `-filer.port=${filer}`, `-filer.port.grpc=${filerGrpc}`, `-filer.localSocket=${join(workDir, 'filer.sock')}`,
    '-s3', `-s3.port=${s3}`, `-s3.port.grpc=${s3Grpc}`, `-s3.config=${configPath}`, `-s3.localSocket=${join(workDir, 's3.sock')}`,
    '-s3.port.iceberg=0', '-s3.port.lance=0', '-s3.iam=false',
    // As on AWS: a write to a missing bucket is a 404, not a new bucket.
    '-s3.autoCreateBucket=false',
  ], { logPath, cwd: workDir }); // cwd: so no master.toml or security.toml of ours is picked up


  const clients: S3Client[] = [];
  const client = (): S3Client => {
    const c = new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
    clients.push(c);
    return c;
  };
  const admin = client();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    for (const c of clients) c.destroy();
    await proc.stop(stopGraceMs);
    // weed puts the gRPC sockets of its services in /tmp whatever it is told, and leaves them.
    const sockets = [['master', masterGrpc], ['volume', volumeGrpc], ['filer', filerGrpc], ['s3', s3Grpc]] as const;
    await Promise.all(sockets.map(([name, port]) => rm(`/tmp/seaweedfs-${name}-grpc-${port}.sock`, { force: true })));
    if (!process.env.FERRY_KEEP_TEST_DIRS) await rm(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
  })());

  const createBucket = async (name: string): Promise<void> => {
    try {
      await admin.send(new CreateBucketCommand({ Bucket: name }));
    } catch (err) {
      const code = (err as { name?: string }).name;
      if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') return;
      throw new Error(`SeaweedFS S3 at ${endpoint}: creating bucket ${name} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  };

  try {
    const started = Date.now();
    // Ready means an object can be written: the gateway answers, the filer is connected and
    // the master has a volume server to place the bytes on.
    let lastError: unknown;
    for (;;) {
      if (proc.exited) throw new Error(`weed server exited during startup:\n${await tail(logPath)}`);
      try {
        await createBucket(probeBucket);
        await admin.send(new PutObjectCommand({ Bucket: probeBucket, Key: 'ready', Body: 'ok' }));
        await admin.send(new DeleteObjectCommand({ Bucket: probeBucket, Key: 'ready' }));
        break;
      } catch (err) {
        lastError = err;
      }
      if (Date.now() - started > startupTimeoutMs) {
        throw new Error(`timed out after ${startupTimeoutMs} ms waiting for SeaweedFS S3 on ${endpoint} (last error: ${String(lastError)}):\n${await tail(logPath)}`);
      }
      await sleep(250);
    }
    log(`SeaweedFS S3 ready on ${endpoint} after ${Date.now() - started} ms`);
    for (const bucket of options.buckets ?? []) await createBucket(bucket);
    return { endpoint, region, accessKeyId, secretAccessKey, client, createBucket, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function tail(path: string, lines = 40): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}
