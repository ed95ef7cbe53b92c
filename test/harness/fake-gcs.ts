// Starts fake-gcs-server (the GCS emulator, built once by test/tools/build-fake-gcs.sh) on
// 127.0.0.1 over plain HTTP with a throwaway filesystem backend, for the gs:// artifact-store
// tests and the memory benchmark. Point GcsArtifactStore at `endpoint` through apiEndpoint.
import { runBuildScript } from './binaries.ts';
import { spawnServerProcess } from './server-process.ts';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';

export interface FakeGcs {
  /** e.g. http://127.0.0.1:41234 (no trailing slash): the storage client's apiEndpoint. */
  endpoint: string;
  /** Creates a bucket (idempotent: an existing bucket is fine). */
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface StartFakeGcsOptions {
  /** Buckets to create before returning. */
  buckets?: string[];
  log?: (line: string) => void;
}

const buildScript = fileURLToPath(new URL('../tools/build-fake-gcs.sh', import.meta.url));
const startupTimeoutMs = 30_000;
const stopGraceMs = 5_000;

/** Builds (if needed) fake-gcs-server and returns the path of the binary. */
export async function ensureFakeGcsBinary(): Promise<string> {
  return join(await runBuildScript(buildScript), 'fake-gcs-server');
}

export async function startFakeGcs(options: StartFakeGcsOptions = {}): Promise<FakeGcs> {
  const log = options.log ?? (() => {});
  const bin = await ensureFakeGcsBinary();
  const workDir = await mkdtemp(join(tmpdir(), 'ferry-fake-gcs-'));
  const logPath = join(workDir, 'fake-gcs-server.log');
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;

  const proc = spawnServerProcess(bin, [
    '-scheme', 'http', '-host', '127.0.0.1', '-port', String(port),
    // Resumable-upload session URLs are built from this; make them match what we dial.
    '-external-url', endpoint,
    // Signed URLs (path style, /<bucket>/<object>) name the endpoint's host: serve them there.
    '-public-host', '127.0.0.1',
    // Filesystem rather than memory: the 1 GiB benchmark should not live in the emulator's heap.
    '-backend', 'filesystem', '-filesystem-root', join(workDir, 'storage'),
    '-log-level', 'warn',
  ], { logPath });


  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    await proc.stop(stopGraceMs);
    if (!process.env.FERRY_KEEP_TEST_DIRS) await rm(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
  })());

  const createBucket = async (name: string): Promise<void> => {
    const res = await fetch(`${endpoint}/storage/v1/b?project=ferry-test`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (!res.ok && res.status !== 409) {
      throw new Error(`fake-gcs-server at ${endpoint}: creating bucket ${name} failed: HTTP ${res.status} ${await res.text()}`);
    }
  };

  try {
    const started = Date.now();
    for (;;) {
      if (proc.exited) throw new Error(`fake-gcs-server exited during startup:\n${await tail(logPath)}`);
      const res = await fetch(`${endpoint}/storage/v1/b`).catch(() => undefined);
      if (res !== undefined) {
        await res.body?.cancel();
        if (res.ok) break;
      }
      if (Date.now() - started > startupTimeoutMs) {
        throw new Error(`timed out after ${startupTimeoutMs} ms waiting for fake-gcs-server on ${endpoint}:\n${await tail(logPath)}`);
      }
      await sleep(100);
    }
    log(`fake-gcs-server ready on ${endpoint} after ${Date.now() - started} ms`);
    for (const bucket of options.buckets ?? []) await createBucket(bucket);
    return { endpoint, createBucket, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function tail(path: string, lines = 40): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

/**
 * Writes a throwaway service account key (a fresh RSA key, an account nobody owns) and returns
 * its path: enough for the storage client to sign V4 URLs locally, which fake-gcs-server
 * accepts without checking the signature.
 */
export async function writeTestServiceAccountKey(dir: string): Promise<string> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const path = join(dir, 'gcs-test-key.json');
  await writeFile(path, JSON.stringify({
    type: 'service_account', project_id: 'ferry-test', client_email: 'ferry-test@ferry-test.iam.gserviceaccount.com',
    private_key_id: 'test', private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), client_id: '0',
    // NOTE: never reached: the client sends no credentials to a custom endpoint; it only signs with the key.
    token_uri: 'http://127.0.0.1:9/token',
  }), { mode: 0o600 });
  return path;
}
