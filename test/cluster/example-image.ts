// The iris example's image: Python 3 with scikit-learn from Debian's packages (debootstrap,
// no PyPI) plus the scripts of examples/iris, pushed under a version tag such as
// `0.3.0-sklearn1.2.1`. The root filesystem is built once and cached as a tarball outside the
// repo; the image is rebuilt only when the registry lacks the tag with the same content, which
// a digest in the image's labels records. Needs root (debootstrap, chroot). Called by the demo
// and the e2e tests; `node test/cluster/example-image.ts <registry>` builds it by hand.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDebianPackage } from '../harness/registry.ts';
import { mountsUnder } from './cleanup.ts';

/** The example's own version: the first part of the tag. Bump it when the scripts' behaviour changes. */
export const EXAMPLE_IMAGE_VERSION = '0.3.0';
export const EXAMPLE_IMAGE_REPOSITORY = 'ferry-examples/iris';
/** Where the scripts live in the image: steps run `python3 /opt/ferry-examples/iris/<step>.py`. */
export const EXAMPLE_SCRIPTS_DIR = '/opt/ferry-examples/iris';
/** The image label holding the content digest that decides whether a pushed tag is current. */
export const CONTENT_LABEL = 'dev.ferry.examples.content-digest';

const scriptsSource = fileURLToPath(new URL('../../examples/iris/', import.meta.url));
const buildah = '/usr/bin/buildah';
const debootstrap = '/usr/sbin/debootstrap';
const chroot = '/usr/sbin/chroot';
const stepUid = 65532;

/**
 * How the root filesystem is made; its hash names the cached tarball, so changing anything
 * here (or `revision`, for changes to the code below) builds a new one.
 */
const recipe = {
  revision: 2,
  suite: 'bookworm',
  variant: 'minbase',
  // FastAPI and uvicorn for serve.py, the example's endpoint (docs/serving.md).
  include: ['python3-sklearn', 'python3-fastapi', 'python3-uvicorn'],
  mirror: 'http://deb.debian.org/debian',
  // python3-scipy Depends on python3-pythran, a Python-to-C++ compiler, which pulls g++,
  // Boost, OpenBLAS and Python headers: ~600 MB needed to compile Pythran code, never to run
  // scipy or scikit-learn. dpkg removes them (--force-depends); apt is not used in the image.
  purge: [
    'python3-pythran', 'python3-beniget', 'python3-gast', 'python3-ply',
    'g++', 'g++-12', 'gcc', 'gcc-12', 'cpp', 'cpp-12', 'libcc1-0', 'libisl23', 'libmpc3', 'libmpfr6',
    'libasan8', 'libtsan2', 'liblsan0', 'libubsan1', 'libitm1',
    'binutils', 'binutils-common', 'binutils-x86-64-linux-gnu', 'libbinutils', 'libctf0', 'libctf-nobfd0', 'libgprofng0', 'libjansson4',
    'libboost-dev', 'libboost1.74-dev', 'libxsimd-dev', 'libopenblas-dev', 'libopenblas-pthread-dev',
    'python3-all', 'python3-all-dev', 'python3-dev', 'python3.11-dev', 'libpython3-all-dev', 'libpython3-dev', 'libpython3.11-dev', 'libpython3.11',
    'libc6-dev', 'libc-dev-bin', 'libstdc++-12-dev', 'libgcc-12-dev', 'linux-libc-dev', 'libcrypt-dev', 'libnsl-dev', 'libtirpc-dev',
    'rpcsvc-proto', 'zlib1g-dev', 'libexpat1-dev', 'libjs-jquery', 'libjs-sphinxdoc', 'libjs-underscore',
  ],
  // Emptied (the directories stay, with their modes: /tmp keeps 1777). /dev is the runtime's.
  empty: ['var/cache/apt', 'var/lib/apt/lists', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian', 'var/log', 'tmp', 'dev'],
  // /usr/share/doc keeps only the copyright files; the test suites of numpy, scipy and sklearn go.
  keepDocs: 'copyright',
  dropTests: 'usr/lib/python3/dist-packages',
  user: { name: 'nonroot', uid: stepUid },
} as const;

/**
 * The image's configuration, fitted to Ferry's step Pod: uid/gid 65532, runAsNonRoot, all
 * capabilities dropped, no privilege escalation. Nothing may need root or a writable home,
 * so HOME and every temporary directory are /tmp, and Python writes no bytecode.
 */
const imageConfig = {
  user: `${stepUid}:${stepUid}`,
  workdir: '/tmp',
  env: {
    // An image made from scratch has no PATH; runtimes differ in what they add.
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/tmp',
    TMPDIR: '/tmp',
    JOBLIB_TEMP_FOLDER: '/tmp',
    LANG: 'C.UTF-8',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
    // One thread each: a step gets a CPU request, not the node; BLAS must not fan out to every core.
    OMP_NUM_THREADS: '1',
    OPENBLAS_NUM_THREADS: '1',
    MKL_NUM_THREADS: '1',
  },
  cmd: ['python3', '-c', 'import sklearn; print("scikit-learn", sklearn.__version__, "- run python3 /opt/ferry-examples/iris/<step>.py")'],
} as const;

export interface CachedRootfs {
  tarball: string;
  key: string;
  /** Installed Debian packages and their versions (after the purge). */
  packages: Record<string, string>;
}

/** Builds (when the registry lacks it) and pushes the example image; returns `<registry>/ferry-examples/iris:<tag>`. */
export async function ensureExampleImage(registry: string, log: (line: string) => void = () => {}): Promise<string> {
  const rootfs = await ensureRootfs(log);
  const sklearn = rootfs.packages['python3-sklearn'];
  if (sklearn === undefined) throw new Error(`the cached rootfs ${rootfs.tarball} has no python3-sklearn; delete it to rebuild`);
  const tag = exampleImageTag(sklearn);
  const ref = `${registry}/${EXAMPLE_IMAGE_REPOSITORY}:${tag}`;
  const scripts = await readScripts();
  const content = contentDigest(rootfs, scripts);
  const pushed = await pushedContentDigest(registry, EXAMPLE_IMAGE_REPOSITORY, tag);
  if (pushed === content) {
    log(`${ref} is in the registry with the same content`);
    return ref;
  }
  const started = Date.now();
  const digest = await buildAndPush(ref, rootfs, scripts, content, tag);
  log(`built and pushed ${ref} (${digest}) in ${((Date.now() - started) / 1000).toFixed(1)} s${pushed === undefined ? '' : ', replacing other content under that tag'}`);
  return ref;
}

/** `0.3.0-sklearn1.2.1`: the example's version and scikit-learn's upstream version (Debian's `1.2.1+dfsg-1`). */
export function exampleImageTag(sklearnDebianVersion: string): string {
  const upstream = sklearnDebianVersion.replace(/^\d+:/, '').split(/[+~-]/)[0] ?? '';
  const tag = `${EXAMPLE_IMAGE_VERSION}-sklearn${upstream}`;
  if (!/^[0-9]+(\.[0-9]+)*$/.test(upstream) || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) {
    throw new Error(`cannot make an image tag from python3-sklearn version ${JSON.stringify(sklearnDebianVersion)}`);
  }
  return tag;
}

/** What the image holds, as one digest: the rootfs (recipe and packages), the scripts, the configuration. */
export function contentDigest(rootfs: Pick<CachedRootfs, 'key' | 'packages'>, scripts: Array<{ name: string; bytes: Buffer }>): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({
    version: EXAMPLE_IMAGE_VERSION,
    rootfs: { key: rootfs.key, packages: Object.entries(rootfs.packages).sort(([a], [b]) => (a < b ? -1 : 1)) },
    scripts: scripts.map((s) => [s.name, createHash('sha256').update(s.bytes).digest('hex')]),
    dir: EXAMPLE_SCRIPTS_DIR,
    config: imageConfig,
  }));
  return `sha256:${hash.digest('hex')}`;
}

export function rootfsKey(): string {
  return createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16);
}

export function cacheDir(): string {
  return join(process.env.FERRY_CACHE ?? join(homedir(), '.cache', 'ferry'), 'example-image');
}

async function readScripts(): Promise<Array<{ name: string; bytes: Buffer }>> {
  const names = (await readdir(scriptsSource)).filter((n) => n.endsWith('.py')).sort();
  if (names.length === 0) throw new Error(`no Python scripts in ${scriptsSource}`);
  return Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(scriptsSource, name)) })));
}

// ---- the root filesystem -------------------------------------------------------------------

/** The cached rootfs tarball, built first when missing. The metadata file is written last: it marks a complete cache. */
export async function ensureRootfs(log: (line: string) => void = () => {}): Promise<CachedRootfs> {
  const dir = cacheDir();
  const key = rootfsKey();
  const tarball = join(dir, `rootfs-${recipe.suite}-${key}.tar`);
  const metadataPath = `${tarball}.json`;
  const cached = await readFile(metadataPath, 'utf8').then((text) => JSON.parse(text) as { packages: Record<string, string> }, () => undefined);
  if (cached !== undefined && existsSync(tarball)) return { tarball, key, packages: cached.packages };

  if (process.getuid?.() !== 0) throw new Error('building the example rootfs needs root (debootstrap, chroot); run as root');
  await ensureDebianPackage(debootstrap, 'debootstrap');
  await mkdir(dir, { recursive: true });
  await removeAbandonedBuilds(dir);
  // In the cache dir, so the final rename stays on one filesystem; the pid marks whose it is.
  const work = await mkdtemp(join(dir, `build-${process.pid}-`));
  try {
    const root = join(work, 'rootfs');
    const started = Date.now();
    log(`debootstrapping ${recipe.suite} with ${recipe.include.join(', ')} from ${recipe.mirror} (a minute or two)`);
    await exec(debootstrap, [`--variant=${recipe.variant}`, `--include=${recipe.include.join(',')}`, recipe.suite, root, recipe.mirror]);
    const bootstrapped = Date.now();
    const packages = await trimRootfs(root);
    await smokeTest(root);
    const tmp = join(work, 'rootfs.tar');
    await exec('tar', ['--sort=name', '--numeric-owner', '-C', root, '-cf', tmp, '.']);
    await rename(tmp, tarball);
    await writeFile(join(work, 'metadata.json'), `${JSON.stringify({ key, recipe, packages }, null, 2)}\n`);
    await rename(join(work, 'metadata.json'), metadataPath);
    const size = (await stat(tarball)).size;
    log(`rootfs ready: ${tarball} (${(size / 2 ** 20).toFixed(0)} MiB, python3-sklearn ${packages['python3-sklearn']}; `
      + `debootstrap ${((bootstrapped - started) / 1000).toFixed(0)} s, trim and tar ${((Date.now() - bootstrapped) / 1000).toFixed(0)} s)`);
    return { tarball, key, packages };
  } finally {
    await removeBuildDir(work);
  }
}

/**
 * Removes build directories whose process is gone (a crash mid-build leaves one behind), unless
 * an orphan of that build (debootstrap, or dpkg chrooted into it) still runs there.
 */
async function removeAbandonedBuilds(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const pid = Number(/^build-(\d+)-/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    const path = join(dir, name);
    if (!(await processesUnder(path))) await removeBuildDir(path);
  }
}

/** Whether a live process has its root or working directory under `dir`, or names it in its command line. */
async function processesUnder(dir: string): Promise<boolean> {
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const root = await readlink(`/proc/${pid}/root`).catch(() => '');
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if ([root, cwd].some((p) => p === dir || p.startsWith(`${dir}/`)) || cmdline.includes(`${dir}/`)) return true;
  }
  return false;
}

/**
 * NOTE: unmounts first. debootstrap mounts /proc and /sys in the target (and in containers
 * bind-mounts device files); killed mid-way, it leaves them, and a recursive delete must not
 * walk into them.
 */
async function removeBuildDir(dir: string): Promise<void> {
  for (const point of mountsUnder(dir).sort((x, y) => y.length - x.length)) await exec('umount', ['--lazy', point]);
  await rm(dir, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Purges the build-only packages, adds the step user, trims; returns the packages left. */
async function trimRootfs(root: string): Promise<Record<string, string>> {
  const chrootEnv = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', DEBIAN_FRONTEND: 'noninteractive' };
  const installed = async (): Promise<Record<string, string>> => {
    const text = await exec(chroot, [root, 'dpkg-query', '-W', '-f', '${db:Status-Abbrev}\t${Package}\t${Version}\n'], chrootEnv);
    return Object.fromEntries(text.split('\n').map((l) => l.split('\t')).filter((f) => f[0]?.startsWith('ii')).map((f) => [f[1]!, f[2]!]));
  };
  const before = await installed();
  const purge = recipe.purge.filter((p) => p in before);
  if (purge.length > 0) await exec(chroot, [root, 'dpkg', '--purge', '--force-depends', ...purge], chrootEnv);

  const { name, uid } = recipe.user;
  await appendFile(join(root, 'etc/passwd'), `${name}:x:${uid}:${uid}:${name}:/tmp:/usr/sbin/nologin\n`);
  await appendFile(join(root, 'etc/group'), `${name}:x:${uid}:\n`);

  for (const dir of recipe.empty) await emptyDir(join(root, dir));
  const docs = join(root, 'usr/share/doc');
  for (const pkg of await readdir(docs).catch(() => [] as string[])) {
    const path = join(docs, pkg);
    if (!(await lstat(path)).isDirectory()) {
      await rm(path, { force: true });
      continue;
    }
    for (const entry of await readdir(path)) if (entry !== recipe.keepDocs) await rm(join(path, entry), { recursive: true, force: true });
  }
  await removeTestDirs(join(root, recipe.dropTests));
  for (const file of ['var/cache/ldconfig/aux-cache', 'var/lib/dpkg/status-old', 'var/lib/dpkg/diversions-old', 'var/cache/debconf/config.dat-old', 'var/cache/debconf/templates.dat-old', 'etc/machine-id']) {
    await rm(join(root, file), { force: true });
  }
  return installed();
}

async function emptyDir(dir: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, entry), { recursive: true, force: true });
}

async function removeTestDirs(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    if (entry.name === 'tests') await rm(path, { recursive: true, force: true });
    else await removeTestDirs(path);
  }
}

/** Before caching: scikit-learn imports and finds its bundled iris data as the step user. */
async function smokeTest(root: string): Promise<void> {
  const script = 'import scipy.optimize, sklearn.linear_model, sklearn.metrics, fastapi, pydantic, uvicorn; from sklearn.datasets import load_iris; assert load_iris().data.shape == (150, 4)';
  await exec(chroot, [`--userspec=${stepUid}:${stepUid}`, root, 'python3', '-c', script], imageConfig.env);
}

// ---- the image -----------------------------------------------------------------------------

/** The rootfs as one layer, the scripts as a second (small) one, the configuration; pushed. Returns the manifest digest. */
async function buildAndPush(ref: string, rootfs: CachedRootfs, scripts: Array<{ name: string; bytes: Buffer }>, content: string, tag: string): Promise<string> {
  await ensureDebianPackage(buildah, 'buildah');
  const dir = await mkdtemp(join(tmpdir(), 'ferry-example-image-'));
  try {
    // Storage of its own (vfs: no mounts to undo), removed afterwards; an empty auth file of its own.
    const storage = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs'];
    await writeFile(join(dir, 'auth.json'), '{"auths":{}}\n', { mode: 0o600 });
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(dir, 'auth.json'), BUILDAH_FORMAT: 'oci' };
    const b = (args: string[]): Promise<string> => exec(buildah, [...storage, ...args], env);

    const staged = join(dir, 'scripts');
    await mkdir(staged);
    for (const s of scripts) await writeFile(join(staged, s.name), s.bytes, { mode: 0o644 });

    const base = (await b(['from', '--quiet', 'scratch'])).trim();
    await b(['add', base, rootfs.tarball, '/']); // a local tar archive is extracted
    await b(['commit', '--quiet', '--rm', base, 'localhost/ferry-example-rootfs']);
    const ctr = (await b(['from', '--quiet', '--pull-never', 'localhost/ferry-example-rootfs'])).trim();
    await b(['copy', '--chown', '0:0', '--chmod', '0644', ctr, `${staged}/.`, `${EXAMPLE_SCRIPTS_DIR}/`]);
    await b([
      'config',
      '--user', imageConfig.user,
      '--workingdir', imageConfig.workdir,
      ...Object.entries(imageConfig.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
      '--cmd', JSON.stringify(imageConfig.cmd),
      '--label', `${CONTENT_LABEL}=${content}`,
      '--label', 'org.opencontainers.image.title=ferry-examples/iris',
      '--label', `org.opencontainers.image.version=${tag}`,
      '--label', `org.opencontainers.image.description=Ferry's iris example: Debian ${recipe.suite}, python3-sklearn ${rootfs.packages['python3-sklearn']}, scripts in ${EXAMPLE_SCRIPTS_DIR}`,
      ctr,
    ]);
    await b(['commit', '--quiet', '--rm', ctr, ref]);
    const digestFile = join(dir, 'digest');
    await b(['push', '--quiet', '--tls-verify=false', '--digestfile', digestFile, ref, `docker://${ref}`]);
    return (await readFile(digestFile, 'utf8')).trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The content label of `repository:tag` in the registry; undefined when the tag is missing or unreadable. */
async function pushedContentDigest(registry: string, repository: string, tag: string): Promise<string | undefined> {
  const get = async (path: string, accept: string): Promise<unknown> => {
    const response = await fetch(`http://${registry}/v2/${repository}/${path}`, { headers: { Accept: accept }, signal: AbortSignal.timeout(10_000) });
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    return response.json();
  };
  try {
    const manifest = await get(`manifests/${tag}`, 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json') as
      { config?: { digest?: string } } | undefined;
    const configDigest = manifest?.config?.digest;
    if (configDigest === undefined) return undefined;
    const config = await get(`blobs/${configDigest}`, '*/*') as { config?: { Labels?: Record<string, string> } } | undefined;
    return config?.config?.Labels?.[CONTENT_LABEL];
  } catch {
    return undefined; // registry down or not one: building will say so when it pushes
  }
}

function exec(bin: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    proc.on('error', (err) => reject(new Error(`running ${bin}: ${err.message}`)));
    proc.on('close', (code) => (code === 0
      ? resolve(stdout)
      : reject(new Error(`${bin} ${args.join(' ')} failed (exit ${code}):\n${(stderr.trim() || stdout.trim()).split('\n').slice(-30).join('\n')}`))));
  });
}

if (import.meta.main) {
  const registry = process.argv[2];
  if (registry === undefined || registry.startsWith('-')) {
    console.error('usage: node test/cluster/example-image.ts <registry host:port>   (needs root; pushes over plain http)');
    process.exitCode = 2;
  } else {
    console.log(await ensureExampleImage(registry, (line) => console.error(`[example-image] ${line}`)));
  }
}
