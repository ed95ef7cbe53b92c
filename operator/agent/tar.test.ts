// The tar module's contract is about files on disk, so these tests use a temporary directory.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { extract, pack, type Header } from 'tar-stream';
import { ARTIFACT_ROOT, extractArtifact, packArtifact } from './tar.ts';

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-tar-test-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const collect = async (stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
};
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A fresh directory under the test's temporary root. */
let counter = 0;
const freshDir = async (name: string): Promise<string> => {
  const dir = join(root, `${++counter}-${name}`);
  await mkdir(dir, { recursive: true });
  return dir;
};

/** The entries (name, type, mode, mtime, owner) of a tar archive. */
async function entriesOf(bytes: Buffer): Promise<Array<Pick<Header, 'name' | 'type' | 'mode' | 'uid' | 'gid'> & { mtime: number }>> {
  const unpacker = extract();
  const entries: Array<Pick<Header, 'name' | 'type' | 'mode' | 'uid' | 'gid'> & { mtime: number }> = [];
  const done = (async () => {
    for await (const entry of unpacker) {
      const { name, type, mode, uid, gid, mtime } = entry.header;
      entries.push({ name, type, mode, uid, gid, mtime: mtime.getTime() });
      entry.resume();
    }
  })();
  unpacker.end(bytes);
  await done;
  return entries;
}

/** A tar archive with these entries, made without packArtifact. */
async function craft(entries: Array<{ name: string; type?: Header['type']; content?: string; linkname?: string; mode?: number }>): Promise<Buffer> {
  const archive = pack();
  for (const e of entries) {
    if ((e.type ?? 'file') === 'file') archive.entry({ name: e.name, type: 'file', mode: e.mode ?? 0o644 }, e.content ?? '');
    else archive.entry({ name: e.name, type: e.type!, ...(e.linkname ? { linkname: e.linkname } : {}) });
  }
  archive.finalize();
  return collect(archive as AsyncIterable<Buffer>);
}

/** A directory tree: data.csv, bin/run.sh (executable), nested/deeper/notes.txt, an empty dir. */
async function makeTree(dir: string): Promise<void> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'nested', 'deeper'), { recursive: true });
  await mkdir(join(dir, 'empty'), { recursive: true });
  await writeFile(join(dir, 'data.csv'), 'a,b\n1,2\n');
  await writeFile(join(dir, 'bin', 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'bin', 'run.sh'), 0o755);
  await writeFile(join(dir, 'nested', 'deeper', 'notes.txt'), 'x'.repeat(200_000));
  await chmod(join(dir, 'nested', 'deeper', 'notes.txt'), 0o600);
}

describe('packArtifact', () => {
  it('gives byte-identical archives for the same directory, even after its mtimes change', async () => {
    const dir = await freshDir('same');
    await makeTree(dir);
    const first = await collect(packArtifact(dir));
    const when = new Date('2001-02-03T04:05:06Z');
    for (const path of ['data.csv', 'bin/run.sh', 'nested/deeper/notes.txt', 'nested', 'bin', '.']) await utimes(join(dir, path), when, when);
    const second = await collect(packArtifact(dir));
    assert.ok(first.length > 0);
    assert.equal(sha256(second), sha256(first));
    assert.ok(second.equals(first));
  });

  it('gives the same archive for the same content in another place, created in another order', async () => {
    const one = await freshDir('one');
    await writeFile(join(one, 'b.txt'), 'B');
    await writeFile(join(one, 'a.txt'), 'A');
    const two = await freshDir('two');
    await writeFile(join(two, 'a.txt'), 'A');
    await writeFile(join(two, 'b.txt'), 'B');
    assert.equal(sha256(await collect(packArtifact(two))), sha256(await collect(packArtifact(one))));
  });

  it('writes sorted entries under the artifact root with zero times and owners and normalised modes', async () => {
    const dir = await freshDir('entries');
    await makeTree(dir);
    const entries = await entriesOf(await collect(packArtifact(dir)));
    assert.deepEqual(entries.map((e) => [e.name, e.type, e.mode.toString(8)]), [
      [`${ARTIFACT_ROOT}/`, 'directory', '755'],
      [`${ARTIFACT_ROOT}/bin/`, 'directory', '755'],
      [`${ARTIFACT_ROOT}/bin/run.sh`, 'file', '755'],
      [`${ARTIFACT_ROOT}/data.csv`, 'file', '644'],
      [`${ARTIFACT_ROOT}/empty/`, 'directory', '755'],
      [`${ARTIFACT_ROOT}/nested/`, 'directory', '755'],
      [`${ARTIFACT_ROOT}/nested/deeper/`, 'directory', '755'],
      [`${ARTIFACT_ROOT}/nested/deeper/notes.txt`, 'file', '644'],
    ]);
    for (const e of entries) assert.deepEqual([e.mtime, e.uid, e.gid], [0, 0, 0], e.name);
  });

  it('packs a single file as the root entry', async () => {
    const dir = await freshDir('single-entries');
    await writeFile(join(dir, 'model.bin'), 'weights');
    const entries = await entriesOf(await collect(packArtifact(join(dir, 'model.bin'))));
    assert.deepEqual(entries.map((e) => [e.name, e.type]), [[ARTIFACT_ROOT, 'file']]);
  });

  it('fails the stream for a path that does not exist', async () => {
    const dir = await freshDir('missing');
    await assert.rejects(collect(packArtifact(join(dir, 'nope'))), /ENOENT/);
  });
});

describe('extractArtifact', () => {
  it('round-trips a single file to the destination path', async () => {
    const dir = await freshDir('single');
    const source = join(dir, 'model.bin');
    const content = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    await writeFile(source, content);
    const destination = join(dir, 'out', 'inputs', 'model');
    await extractArtifact(packArtifact(source), destination);
    assert.ok((await lstat(destination)).isFile());
    assert.ok((await readFile(destination)).equals(content));
  });

  it('round-trips a nested directory, keeping the exec bit', async () => {
    const dir = await freshDir('tree');
    const source = join(dir, 'src');
    await mkdir(source);
    await makeTree(source);
    const destination = join(dir, 'dest');
    await extractArtifact(packArtifact(source), destination);

    assert.deepEqual((await readdir(destination)).sort(), ['bin', 'data.csv', 'empty', 'nested']);
    assert.equal(await readFile(join(destination, 'data.csv'), 'utf8'), 'a,b\n1,2\n');
    assert.equal(await readFile(join(destination, 'bin', 'run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(await readFile(join(destination, 'nested', 'deeper', 'notes.txt'), 'utf8'), 'x'.repeat(200_000));
    assert.ok((await stat(join(destination, 'empty'))).isDirectory());
    assert.notEqual((await stat(join(destination, 'bin', 'run.sh'))).mode & 0o111, 0, 'run.sh stays executable');
    assert.equal((await stat(join(destination, 'data.csv'))).mode & 0o111, 0, 'data.csv is not executable');
    assert.equal((await stat(join(destination, 'nested', 'deeper', 'notes.txt'))).mode & 0o111, 0);

    // Packing the extracted copy gives the same bytes: the digest survives a round trip.
    assert.equal(sha256(await collect(packArtifact(destination))), sha256(await collect(packArtifact(source))));
  });

  it('packs a symlink but does not extract it', async () => {
    const dir = await freshDir('symlink');
    const source = join(dir, 'src');
    await mkdir(source);
    await writeFile(join(source, 'real.txt'), 'real');
    await symlink('/etc/passwd', join(source, 'link'));
    const bytes = await collect(packArtifact(source));
    assert.deepEqual((await entriesOf(bytes)).map((e) => [e.name, e.type]), [
      [`${ARTIFACT_ROOT}/`, 'directory'], [`${ARTIFACT_ROOT}/link`, 'symlink'], [`${ARTIFACT_ROOT}/real.txt`, 'file'],
    ]);
    const destination = join(dir, 'dest');
    await extractArtifact(Readable.from([bytes]), destination);
    assert.deepEqual(await readdir(destination), ['real.txt']);
  });

  const escapes = [
    `${ARTIFACT_ROOT}/../evil.txt`,
    `${ARTIFACT_ROOT}/a/../../evil.txt`,
    '../evil.txt',
    '/tmp/evil.txt',
    'other/evil.txt',
    `${ARTIFACT_ROOT}x/evil.txt`,
  ];
  for (const name of escapes) {
    it(`rejects an entry named "${name}"`, async () => {
      const dir = await freshDir('escape');
      const destination = join(dir, 'sandbox', 'dest');
      const bytes = await craft([{ name: `${ARTIFACT_ROOT}/`, type: 'directory' }, { name, content: 'pwned' }]);
      await assert.rejects(extractArtifact(Readable.from([bytes]), destination), {
        message: `archive entry "${name}" is outside ${ARTIFACT_ROOT}/`,
      });
      assert.deepEqual(await readdir(join(dir)), ['sandbox'], 'nothing was written beside the sandbox');
      assert.deepEqual(await readdir(join(dir, 'sandbox')), ['dest']);
      assert.deepEqual(await readdir(destination), []);
    });
  }

  it('accepts a crafted archive whose entries stay under the root', async () => {
    const dir = await freshDir('crafted');
    const bytes = await craft([
      { name: `${ARTIFACT_ROOT}/`, type: 'directory' },
      { name: `${ARTIFACT_ROOT}/./a/b.txt`, content: 'b' },
      { name: `${ARTIFACT_ROOT}/a/c/../d.txt`, content: 'd' },
    ]);
    const destination = join(dir, 'dest');
    await extractArtifact(Readable.from([bytes]), destination);
    assert.equal(await readFile(join(destination, 'a', 'b.txt'), 'utf8'), 'b');
    assert.equal(await readFile(join(destination, 'a', 'd.txt'), 'utf8'), 'd');
  });

  it('drops setuid, setgid and sticky bits, keeping the permission bits', async () => {
    const dir = await freshDir('setuid');
    const bytes = await craft([
      { name: `${ARTIFACT_ROOT}/`, type: 'directory' },
      { name: `${ARTIFACT_ROOT}/suid`, content: '#!/bin/sh', mode: 0o4755 },
      { name: `${ARTIFACT_ROOT}/sgid`, content: 'x', mode: 0o2640 },
      { name: `${ARTIFACT_ROOT}/sticky`, content: 'x', mode: 0o1777 },
    ]);
    const destination = join(dir, 'dest');
    await extractArtifact(Readable.from([bytes]), destination);
    const modes: Record<string, number> = Object.fromEntries(await Promise.all(['suid', 'sgid', 'sticky'].map(async (n) => [n, (await stat(join(destination, n))).mode & 0o7777] as const)));
    // The process umask (022 here) may clear group/other write bits further; setuid/setgid/sticky never survive.
    for (const [name, mode] of Object.entries(modes)) assert.equal(mode & 0o7000, 0, `${name} has mode ${mode.toString(8)}`);
    assert.equal(modes.suid! & 0o700, 0o700);
  });

  it('refuses an archive with more entries than the limit, and a second entry of the same name', async () => {
    const dir = await freshDir('limits');
    const many = await craft([{ name: `${ARTIFACT_ROOT}/`, type: 'directory' }, ...Array.from({ length: 5 }, (_, i) => ({ name: `${ARTIFACT_ROOT}/f${i}`, content: 'x' }))]);
    await assert.rejects(extractArtifact(Readable.from([many]), join(dir, 'many'), 4), { message: 'the archive has more than 4 entries' });
    const twice = await craft([{ name: `${ARTIFACT_ROOT}/`, type: 'directory' }, { name: `${ARTIFACT_ROOT}/a`, content: 'first' }, { name: `${ARTIFACT_ROOT}/a`, content: 'second' }]);
    await assert.rejects(extractArtifact(Readable.from([twice]), join(dir, 'twice')), { code: 'EEXIST' });
    assert.equal(await readFile(join(dir, 'twice', 'a'), 'utf8'), 'first');
  });
});
