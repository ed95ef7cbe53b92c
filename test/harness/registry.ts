// A real OCI registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
// throwaway filesystem storage, optionally behind htpasswd or token auth; and buildah to build
// tiny FROM-scratch images and push them into it. Missing Debian packages are installed once.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

export interface RegistryUser { username: string; password: string }

export type RegistryAuth =
  /** HTTP Basic against an htpasswd file (bcrypt, made with `htpasswd -B`). */
  | { htpasswd: RegistryUser[] }
  /**
   * The Docker token flow: the registry sends clients to `realm` and accepts JWTs from
   * `issuer` for `service`, signed by a key whose certificate is in `rootCertBundle` (PEM).
   */
  | { token: { realm: string; service: string; issuer: string; rootCertBundle: string } };

export interface StartRegistryOptions {
  auth?: RegistryAuth;
  log?: (line: string) => void;
}

export interface TestRegistry {
  /** 127.0.0.1:PORT, as written in image references. */
  host: string;
  logPath: string;
  stop(): Promise<void>;
}

export interface PushOptions {
  /** For a registry started with htpasswd (or a token service that takes these). */
  credentials?: RegistryUser;
  /** Manifest type pushed: OCI (buildah's default) or Docker schema 2. */
  format?: 'oci' | 'v2s2';
  log?: (line: string) => void;
}

const REGISTRY_BIN = '/usr/bin/docker-registry';
const BUILDAH_BIN = '/usr/bin/buildah';
const HTPASSWD_BIN = '/usr/bin/htpasswd';
const startupTimeoutMs = 30_000;
const stopGraceMs = 5_000;

export async function startRegistry(options: StartRegistryOptions = {}): Promise<TestRegistry> {
  await ensureDebianPackage(REGISTRY_BIN, 'docker-registry');
  const log = options.log ?? (() => {});
  const workDir = await mkdtemp(join(tmpdir(), 'ferry-registry-'));
  const logPath = join(workDir, 'registry.log');
  try {
    const auth = await writeAuthConfig(workDir, options.auth);
    // freePort() releases the port before the registry binds it; retry if someone took it meanwhile.
    for (let tries = 1; ; tries++) {
      const host = `127.0.0.1:${await freePort()}`;
      const configPath = join(workDir, 'config.yml');
      await writeFile(configPath, registryConfig(host, join(workDir, 'data'), auth));
      const started = Date.now();
      const child = startChild(REGISTRY_BIN, ['serve', configPath], logPath);
      const ready = await waitReady(host, child, logPath);
      if (ready === 'ready') {
        log(`docker-registry ready on ${host} after ${Date.now() - started} ms (${workDir})`);
        // On an exit without stop() the child is killed (startChild); its storage goes too.
        const removeOnExit = (): void => { if (!process.env.FERRY_KEEP_TEST_DIRS) rmSync(workDir, { recursive: true, force: true }); };
        process.on('exit', removeOnExit);
        const stop = stopper(child, workDir, log);
        return { host, logPath, stop: () => stop().finally(() => process.off('exit', removeOnExit)) };
      }
      if (ready === 'port-taken' && tries < 3) continue;
      throw new Error(`docker-registry did not start on ${host}:\n${await tail(logPath)}`);
    }
  } catch (err) {
    await removeDir(workDir, log);
    throw err;
  }
}

/** Builds a FROM-scratch image holding /content.txt with `content`, pushes it, returns its manifest digest. */
export async function buildAndPushImage(host: string, repository: string, tag: string, content: string, options: PushOptions = {}): Promise<string> {
  await ensureDebianPackage(BUILDAH_BIN, 'buildah');
  const log = options.log ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), 'ferry-buildah-'));
  const started = Date.now();
  try {
    const context = join(dir, 'context');
    await mkdir(context);
    await writeFile(join(context, 'content.txt'), content);
    await writeFile(join(context, 'Containerfile'), 'FROM scratch\nCOPY content.txt /content.txt\n');
    const image = `${host}/${repository}:${tag}`;
    // Storage of its own, so tests neither see nor leave images in /var/lib/containers. vfs
    // rather than overlay: no mounts to undo before the directory can be removed, and it works
    // inside containers too; for a one-file image it costs nothing.
    const storage = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs'];
    // An empty auth file of its own: --creds must not read or write the machine's login state.
    await writeFile(join(dir, 'auth.json'), '{"auths":{}}\n', { mode: 0o600 });
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(dir, 'auth.json'), BUILDAH_FORMAT: options.format === 'v2s2' ? 'docker' : 'oci' };
    await runOk(BUILDAH_BIN, [...storage, 'build', '--layers=false', '-f', join(context, 'Containerfile'), '-t', image, context], env);
    const digestFile = join(dir, 'digest');
    await runOk(BUILDAH_BIN, [
      ...storage, 'push', '--quiet', '--tls-verify=false', '--retry', '1', '--digestfile', digestFile,
      ...(options.format === undefined ? [] : ['--format', options.format]),
      ...(options.credentials === undefined ? [] : ['--creds', `${options.credentials.username}:${options.credentials.password}`]),
      image, `docker://${image}`,
    ], env);
    const digest = (await readFile(digestFile, 'utf8')).trim();
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new Error(`buildah wrote an unexpected digest ${JSON.stringify(digest)}`);
    log(`built and pushed ${image} (${digest}) in ${Date.now() - started} ms`);
    return digest;
  } finally {
    await removeDir(dir, log);
  }
}

interface Child { proc: ChildProcess; exited: Promise<void>; done: boolean }

function startChild(bin: string, args: string[], logPath: string): Child {
  const fd = openSync(logPath, 'a');
  const proc = spawn(bin, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd); // the child holds its own copy
  // A test that fails before stop() must not hang the run; the 'exit' hook below still kills it.
  proc.unref();
  const child: Child = { proc, exited: Promise.resolve(), done: false };
  // If the test process dies without stop(), don't leave a registry behind.
  const kill = (): void => { if (!child.done) proc.kill('SIGKILL'); };
  process.on('exit', kill);
  child.exited = new Promise((resolve) => {
    const finish = (): void => { child.done = true; process.off('exit', kill); resolve(); };
    proc.once('exit', finish);
    // Spawn failures emit 'error' without 'exit'.
    proc.once('error', (err) => { void writeFile(logPath, `spawn ${bin} failed: ${err.message}\n`, { flag: 'a' }); finish(); });
  });
  return child;
}

async function waitReady(host: string, child: Child, logPath: string): Promise<'ready' | 'port-taken' | 'failed'> {
  const deadline = Date.now() + startupTimeoutMs;
  while (Date.now() < deadline) {
    if (child.done) return /address already in use/.test(await tail(logPath)) ? 'port-taken' : 'failed';
    const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
    await response?.body?.cancel();
    // 401 is ready too: the registry is up and asking for credentials.
    if (response !== undefined && (response.status === 200 || response.status === 401)) return 'ready';
    await sleep(50);
  }
  child.proc.kill('SIGKILL');
  await child.exited;
  return 'failed';
}

function stopper(child: Child, workDir: string, log: (line: string) => void): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => (stopping ??= (async () => {
    if (!child.done) {
      child.proc.kill('SIGTERM');
      const timer = setTimeout(() => child.proc.kill('SIGKILL'), stopGraceMs);
      await child.exited;
      clearTimeout(timer);
    }
    await removeDir(workDir, log);
  })());
}

async function removeDir(dir: string, log: (line: string) => void): Promise<void> {
  if (process.env.FERRY_KEEP_TEST_DIRS) log(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
}

type AuthConfig = { kind: 'none' } | { kind: 'htpasswd'; path: string } | { kind: 'token'; realm: string; service: string; issuer: string; bundlePath: string };

async function writeAuthConfig(workDir: string, auth: RegistryAuth | undefined): Promise<AuthConfig> {
  if (auth === undefined) return { kind: 'none' };
  if ('htpasswd' in auth) {
    await ensureDebianPackage(HTPASSWD_BIN, 'apache2-utils');
    const lines: string[] = [];
    for (const user of auth.htpasswd) {
      // The registry only accepts bcrypt entries (-B); -i reads the password from stdin, off the command line.
      lines.push((await runOk(HTPASSWD_BIN, ['-niB', user.username], process.env, user.password)).trim());
    }
    const path = join(workDir, 'htpasswd');
    await writeFile(path, `${lines.join('\n')}\n`, { mode: 0o600 });
    return { kind: 'htpasswd', path };
  }
  const bundlePath = join(workDir, 'token-root.pem');
  await writeFile(bundlePath, auth.token.rootCertBundle);
  return { kind: 'token', realm: auth.token.realm, service: auth.token.service, issuer: auth.token.issuer, bundlePath };
}

function registryConfig(host: string, dataDir: string, auth: AuthConfig): string {
  const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid YAML scalar
  const authYaml = auth.kind === 'htpasswd'
    ? `auth:\n  htpasswd:\n    realm: ferry-test\n    path: ${q(auth.path)}\n`
    : auth.kind === 'token'
      ? `auth:\n  token:\n    realm: ${q(auth.realm)}\n    service: ${q(auth.service)}\n    issuer: ${q(auth.issuer)}\n    rootcertbundle: ${q(auth.bundlePath)}\n`
      : '';
  return `version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: ${q(dataDir)}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: ${q(host)}
  secret: ${q(randomBytes(16).toString('hex'))}
${authYaml}`;
}

const installs = new Map<string, Promise<void>>();

/**
 * Installs a Debian package when its binary is missing, once per process. Says so on stderr:
 * a test run that changes the machine should not do it silently.
 */
export function ensureDebianPackage(binary: string, pkg: string): Promise<void> {
  if (existsSync(binary)) return Promise.resolve();
  let pending = installs.get(pkg);
  if (pending === undefined) {
    pending = (async () => {
      process.stderr.write(`[harness] ${binary} is missing: running apt-get install -y ${pkg}\n`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      // Another test process may be installing at the same time: wait for dpkg's lock, don't fail on it.
      const install = (): Promise<{ code: number; stdout: string; stderr: string }> =>
        runWithEnv('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=300', pkg], env);
      let result = await install();
      if (result.code !== 0 && /Unable to locate package|has no installation candidate/.test(result.stderr)) {
        process.stderr.write('[harness] apt-get does not know the package: running apt-get update\n');
        await runWithEnv('apt-get', ['update', '-o', 'DPkg::Lock::Timeout=300'], env);
        result = await install();
      }
      if (result.code !== 0 || !existsSync(binary)) {
        throw new Error(`apt-get install -y ${pkg} failed (exit ${result.code}); install it by hand (needs root):\n${result.stderr.trim()}`);
      }
      process.stderr.write(`[harness] installed ${pkg}\n`);
    })();
    installs.set(pkg, pending);
    pending.catch(() => installs.delete(pkg)); // let a later caller try again
  }
  return pending;
}

async function runOk(bin: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<string> {
  const result = await runWithEnv(bin, args, env, input);
  if (result.code !== 0) throw new Error(`${bin} ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr.trim()}`);
  return result.stdout;
}

function runWithEnv(bin: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('error', (err) => reject(new Error(`running ${bin} ${args.join(' ')}: ${err.message}`)));
    proc.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    proc.stdin.end(input);
  });
}

async function tail(path: string, lines = 30): Promise<string> {
  const text = await readFile(path, 'utf8').catch((err: Error) => `(cannot read log: ${err.message})`);
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
