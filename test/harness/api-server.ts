// Starts a throwaway etcd + kube-apiserver pair on 127.0.0.1 for integration tests and the
// `cli.ts up` dev loop; no controller-manager or scheduler runs, so nothing reconciles pods.
// The returned handle carries an admin kubeconfig (static token, group system:masters).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureBinaries } from './binaries.ts';
import { freePorts } from './ports.ts';

export interface KubectlResult { code: number; stdout: string; stderr: string }

export interface ApiServer {
  url: string;
  kubeconfigPath: string;
  kubeconfig: string;
  token: string;
  binDir: string;
  workDir: string;
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  stop(): Promise<void>;
}

export interface StartApiServerOptions {
  /** Defaults to a fresh mkdtemp; a caller-supplied dir is the caller's and is never removed. */
  workDir?: string;
  log?: (line: string) => void;
}

const startupTimeoutMs = 90_000;
const stopGraceMs = 10_000;

interface Child { name: string; proc: ChildProcess; logPath: string; exited: Promise<void>; done: boolean }

export async function startApiServer(options: StartApiServerOptions = {}): Promise<ApiServer> {
  const log = options.log ?? (() => {});
  const binDir = await ensureBinaries();
  const started = Date.now(); // after the (possibly minutes-long) first build, so it isn't counted
  const ownsWorkDir = options.workDir === undefined;
  const workDir = options.workDir === undefined
    ? await mkdtemp(join(tmpdir(), 'ferry-apiserver-'))
    : resolve(options.workDir);
  await mkdir(workDir, { recursive: true });

  const children: Child[] = [];
  // If the test process exits without stop() (crash, process.exit), don't leak servers.
  const killAll = (): void => { for (const c of children) if (!c.done) c.proc.kill('SIGKILL'); };
  process.on('exit', killAll);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    for (const child of [...children].reverse()) await terminate(child); // apiserver before etcd
    process.off('exit', killAll);
    if (ownsWorkDir && !process.env.FERRY_KEEP_TEST_DIRS) await rm(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
  })());

  try {
    const [etcdClientPort, etcdPeerPort, apiPort] = await freePorts(3);
    if (apiPort === undefined) throw new Error('freePorts(3) returned fewer than 3 ports');
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startChild(children, 'etcd', join(binDir, 'etcd'), join(workDir, 'etcd.log'), [
      '--name=ferry-test', `--data-dir=${join(workDir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=ferry-test=${peerUrl}`,
      '--unsafe-no-fsync=true', // test data is disposable; fsync dominates write latency
      `--quota-backend-bytes=${256 * 1024 * 1024}`,
    ]);
    await waitUntil('etcd /health', [etcd], async () => {
      const res = await fetch(`${etcdUrl}/health`).catch(() => undefined);
      return res?.status === 200;
    });
    log(`etcd ready on ${etcdUrl} after ${Date.now() - started} ms`);

    const token = randomBytes(24).toString('hex');
    await writeFile(join(workDir, 'tokens.csv'), `${token},ferry-admin,ferry-admin,"system:masters"\n`, { mode: 0o600 });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(join(workDir, 'sa.key'), privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    await writeFile(join(workDir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const certDir = join(workDir, 'certs');
    const url = `https://127.0.0.1:${apiPort}`;
    const apiserver = startChild(children, 'kube-apiserver', join(binDir, 'kube-apiserver'), join(workDir, 'kube-apiserver.log'), [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
      `--cert-dir=${certDir}`, // self-signs apiserver.crt (+ its CA) here on first start
      `--token-auth-file=${join(workDir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${join(workDir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(workDir, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      // No controller-manager creates each namespace's `default` ServiceAccount, so this
      // plugin would reject every pod in a fresh namespace.
      '--disable-admission-plugins=ServiceAccount',
      '--enable-priority-and-fairness=false', // less startup work and CPU on small CI machines
    ]);
    await waitUntil('kube-apiserver /readyz', [etcd, apiserver], async () => (await httpsGet(url, '/readyz', token)).status === 200);
    log(`kube-apiserver ready on ${url} after ${Date.now() - started} ms`);

    const caPem = await pickCa(join(certDir, 'apiserver.crt'), url, token);
    if (caPem === undefined) log('apiserver cert does not validate for 127.0.0.1; kubeconfig skips TLS verification');
    const kubeconfig = renderKubeconfig(url, token, caPem);
    const kubeconfigPath = join(workDir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig, { mode: 0o600 });

    const kubectl = (args: string[], input?: string): Promise<KubectlResult> =>
      // A per-server cache dir keeps discovery caches for ever-changing ports out of ~/.kube.
      run(join(binDir, 'kubectl'), ['--kubeconfig', kubeconfigPath, '--cache-dir', join(workDir, 'kubectl-cache'), ...args], input);

    // The bootstrap controller creates `default` shortly after /readyz; tests assume it exists.
    await waitUntil('namespace default', [etcd, apiserver], async () =>
      (await httpsGet(url, '/api/v1/namespaces/default', token, caPem)).status === 200);
    const check = await kubectl(['get', 'namespace', 'default', '-o', 'name']);
    if (check.code !== 0) throw new Error(`kubectl cannot reach ${url} with ${kubeconfigPath}: ${check.stderr.trim()}`);
    log(`API server up in ${Date.now() - started} ms (workDir ${workDir})`);
    return { url, kubeconfigPath, kubeconfig, token, binDir, workDir, kubectl, stop };
  } catch (err) {
    await stop();
    throw err;
  }

  async function waitUntil(what: string, watched: Child[], probe: () => Promise<boolean>): Promise<void> {
    const deadline = started + startupTimeoutMs;
    for (;;) {
      const dead = watched.find((c) => c.done);
      if (dead) throw new Error(`${dead.name} exited while waiting for ${what}:\n${await tail(dead.logPath)}`);
      if (await probe().catch(() => false)) return;
      if (Date.now() > deadline) {
        const logs = await Promise.all(watched.map(async (c) => `--- ${c.name} (${c.logPath}):\n${await tail(c.logPath)}`));
        throw new Error(`timed out after ${startupTimeoutMs} ms waiting for ${what}\n${logs.join('\n')}`);
      }
      await sleep(200);
    }
  }
}

function startChild(children: Child[], name: string, bin: string, logPath: string, args: string[]): Child {
  const fd = openSync(logPath, 'a');
  const proc = spawn(bin, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd); // the child holds its own copy
  const child: Child = { name, proc, logPath, exited: Promise.resolve(), done: false };
  child.exited = new Promise((res) => {
    proc.once('exit', () => { child.done = true; res(); });
    // Spawn failures (e.g. missing binary) emit 'error' without 'exit'.
    proc.once('error', (err) => { child.done = true; void writeFile(logPath, `spawn ${bin} failed: ${err.message}\n`, { flag: 'a' }); res(); });
  });
  children.push(child);
  return child;
}

async function terminate(child: Child): Promise<void> {
  if (child.done) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), stopGraceMs);
  await child.exited;
  clearTimeout(timer);
}

async function tail(path: string, lines = 40): Promise<string> {
  const text = await readFile(path, 'utf8').catch((err: Error) => `(cannot read log: ${err.message})`);
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** GET over HTTPS with a bearer token; without a CA the server cert is not verified. */
export function httpsGet(baseUrl: string, path: string, token: string, caPem?: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(new URL(path, baseUrl), {
      headers: { Authorization: `Bearer ${token}` },
      ...(caPem === undefined ? { rejectUnauthorized: false } : { ca: caPem }),
      timeout: 5_000,
    }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => res({ status: response.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', rej);
    req.end();
  });
}

/**
 * Returns the self-signed CA PEM from the apiserver's cert file (leaf first, then its CA)
 * if a verified request to 127.0.0.1 succeeds with it, else undefined.
 */
async function pickCa(certFile: string, url: string, token: string): Promise<string | undefined> {
  const pems = (await readFile(certFile, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  const ca = pems.find((pem) => new X509Certificate(pem).ca) ?? pems.join('');
  const leaf = pems[0];
  if (leaf === undefined || new X509Certificate(leaf).checkIP('127.0.0.1') === undefined) return undefined;
  const verified = await httpsGet(url, '/readyz', token, ca).catch(() => undefined);
  return verified?.status === 200 ? ca : undefined;
}

function renderKubeconfig(url: string, token: string, caPem: string | undefined): string {
  const tls = caPem === undefined
    ? 'insecure-skip-tls-verify: true'
    : `certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`;
  return `apiVersion: v1
kind: Config
clusters:
  - name: ferry-test
    cluster:
      server: ${url}
      ${tls}
users:
  - name: ferry-admin
    user:
      token: ${token}
contexts:
  - name: ferry-test
    context:
      cluster: ferry-test
      user: ferry-admin
current-context: ferry-test
`;
}

export function run(bin: string, args: string[], input?: string): Promise<KubectlResult> {
  return new Promise((res, rej) => {
    const proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('error', (err) => rej(new Error(`running ${bin} ${args.join(' ')}: ${err.message}`)));
    proc.on('close', (code) => res({ code: code ?? -1, stdout, stderr }));
    proc.stdin.end(input);
  });
}
