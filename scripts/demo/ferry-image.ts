// The Ferry image in a registry the cluster pulls from: built by scripts/build-image.sh (each
// part cached by what it is made of), then pushed with buildah, which reports the digest the
// chart pins the operator and the step agent to.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../test/harness/helm.ts';

export interface PushedImage {
  /** e.g. 10.244.0.1:5000/ferry/ferry */
  repository: string;
  tag: string;
  /** sha256:… of the manifest in the registry. */
  digest: string;
}

const root = join(import.meta.dirname, '..', '..');

export async function buildAndPushFerryImage(registry: string, log: (line: string) => void): Promise<PushedImage> {
  const started = Date.now();
  const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const build = await runCommand('bash', [join(root, 'scripts', 'build-image.sh'), '--no-verify'], { cwd: root });
  if (build.code !== 0) throw new Error(`scripts/build-image.sh failed (exit ${build.code}):\n${build.stderr.trim().split('\n').slice(-20).join('\n')}`);
  const repository = `${registry}/ferry/ferry`;
  const dir = await mkdtemp(join(tmpdir(), 'ferry-push-'));
  try {
    const digestFile = join(dir, 'digest');
    const push = await runCommand('buildah', ['push', '--quiet', '--tls-verify=false', '--digestfile', digestFile, `localhost/ferry:${version}`, `docker://${repository}:${version}`]);
    if (push.code !== 0) throw new Error(`buildah push to ${repository}:${version} failed (exit ${push.code}): ${push.stderr.trim()}`);
    const digest = (await readFile(digestFile, 'utf8')).trim();
    log(`Ferry image ${repository}:${version}@${digest.slice(0, 19)}… ready in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return { repository, tag: version, digest };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
