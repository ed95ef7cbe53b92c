// The local cluster's own images, built here because nothing can be pulled: the pause
// (sandbox) image and the smoke-test probe, each a static Go binary in a FROM-scratch image
// made with buildah and pushed to the cluster's registry. Tags are content hashes of the Go
// source and toolchain, so an image is built once and found in the registry afterwards.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runOk } from './processes.ts';

export type Program = 'pause' | 'probe';

const sourceRoot = fileURLToPath(new URL('./images', import.meta.url));
const buildah = '/usr/bin/buildah';

/** Builds (if the registry lacks it) and pushes the program's image; returns its reference. */
export async function ensureProgramImage(registry: string, program: Program, log: (line: string) => void = () => {}): Promise<string> {
  const tag = await sourceTag(program);
  const repository = `ferry-local/${program}`;
  const ref = `${registry}/${repository}:${tag}`;
  if (await hasManifest(registry, repository, tag)) return ref;
  const started = Date.now();
  const binary = await buildProgram(program, tag);
  const dir = await mkdtemp(join(tmpdir(), `ferry-image-${program}-`));
  try {
    const context = join(dir, 'context');
    await mkdir(context);
    await copyFile(binary, join(context, program));
    await writeFile(join(context, 'Containerfile'), `FROM scratch\nCOPY ${program} /${program}\nENTRYPOINT ["/${program}"]\n`);
    // Storage of its own (vfs: no mounts to undo), removed afterwards.
    const storage = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs'];
    await writeFile(join(dir, 'auth.json'), '{"auths":{}}\n', { mode: 0o600 });
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(dir, 'auth.json'), BUILDAH_FORMAT: 'oci' };
    await runWithEnv([...storage, 'build', '--layers=false', '-f', join(context, 'Containerfile'), '-t', ref, context], env);
    await runWithEnv([...storage, 'push', '--quiet', '--tls-verify=false', ref, `docker://${ref}`], env);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  log(`built and pushed ${ref} in ${Date.now() - started} ms`);
  return ref;
}

async function sourceTag(program: Program): Promise<string> {
  const hash = createHash('sha256');
  hash.update(await readFile(join(sourceRoot, program, 'main.go')));
  hash.update(await readFile(join(sourceRoot, 'go.mod')));
  hash.update(await runOk('go', ['version']));
  return hash.digest('hex').slice(0, 16);
}

/** The static binary, cached outside the repo by the same content hash. */
async function buildProgram(program: Program, tag: string): Promise<string> {
  const cacheDir = join(process.env.FERRY_CACHE ?? join(homedir(), '.cache', 'ferry'), 'cluster-images');
  const out = join(cacheDir, `${program}-${tag}`);
  if (existsSync(out)) return out;
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${out}.tmp.${process.pid}`;
  await runIn(sourceRoot, 'go', ['build', '-trimpath', '-ldflags=-s -w', '-o', tmp, `./${program}`], { ...process.env, CGO_ENABLED: '0' });
  await rename(tmp, out);
  return out;
}

async function hasManifest(registry: string, repository: string, tag: string): Promise<boolean> {
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
    signal: AbortSignal.timeout(5_000),
  }).catch(() => undefined);
  return response?.status === 200;
}

async function runWithEnv(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  await runIn(undefined, buildah, args, env);
}

async function runIn(cwd: string | undefined, bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const proc = spawn(bin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    proc.on('error', (err) => reject(new Error(`running ${bin}: ${err.message}`)));
    proc.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} ${args.join(' ')} failed (exit ${code}):\n${output.trim()}`))));
  });
}
