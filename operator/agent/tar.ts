// Deterministic tar streams of a step's output (a file or a directory) and their extraction.
// The same content always gives the same bytes (sorted entries, zero times and owners), so
// the same output hashes to the same digest and caching by digest works. Entries live under
// one top-level name, ARTIFACT_ROOT, which extraction maps to the destination path.
// Data flows chunk by chunk with backpressure: memory stays bounded for any artifact size.
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract, pack, type Header, type Pack } from 'tar-stream';

export const ARTIFACT_ROOT = 'artifact';

const header = (name: string, type: Header['type'], extra: Partial<Header> = {}) => ({
  name, type, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '', ...extra,
});

async function addFile(archive: Pack, source: string, name: string, size: number, mode: number): Promise<void> {
  let finished!: Promise<void>;
  const entry = archive.entry(header(name, 'file', { mode, size }));
  finished = new Promise((resolve, reject) => {
    entry.on('finish', () => resolve());
    entry.on('error', reject);
  });
  for await (const chunk of createReadStream(source)) {
    if (!entry.write(chunk as Buffer)) await once(entry, 'drain');
  }
  entry.end(undefined); // streamx types want an argument; undefined writes nothing
  await finished;
}

/** A tar stream of `path` (file or directory), entries sorted by name. */
export function packArtifact(path: string): Readable {
  const archive = pack();
  const add = async (source: string, name: string): Promise<void> => {
    const info = await lstat(source);
    if (info.isDirectory()) {
      archive.entry(header(`${name}/`, 'directory', { mode: 0o755 }));
      for (const child of (await readdir(source)).sort()) await add(join(source, child), `${name}/${child}`);
    } else if (info.isSymbolicLink()) {
      archive.entry(header(name, 'symlink', { mode: 0o777, linkname: await readlink(source) }));
    } else if (info.isFile()) {
      await addFile(archive, source, name, info.size, info.mode & 0o111 ? 0o755 : 0o644);
    }
    // Sockets, devices and FIFOs are not artifacts; they are left out.
  };
  add(path, ARTIFACT_ROOT).then(
    () => archive.finalize(),
    (err: unknown) => archive.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  return Readable.from(archive);
}

/** At most this many entries are extracted from one artifact (a bound on inodes, not on bytes: the /ferry volume's size limit bounds those). */
export const MAX_ARCHIVE_ENTRIES = 1_000_000;

/**
 * Extracts a packArtifact stream so that its root becomes `destination`. Only plain files and
 * directories are made, with permission bits only (no setuid, setgid or sticky bit).
 */
export async function extractArtifact(source: AsyncIterable<Buffer>, destination: string, maxEntries = MAX_ARCHIVE_ENTRIES): Promise<void> {
  const unpacker = extract();
  let entries = 0;
  const feeding = (async () => {
    for await (const chunk of source) {
      if (!unpacker.write(chunk)) await once(unpacker, 'drain');
    }
    unpacker.end(undefined);
  })();
  feeding.catch((err: unknown) => unpacker.destroy(err instanceof Error ? err : new Error(String(err))));
  for await (const entry of unpacker) {
    if (++entries > maxEntries) throw new Error(`the archive has more than ${maxEntries} entries`);
    const relative = entryPath(entry.header.name);
    if (relative === undefined) throw new Error(`archive entry "${entry.header.name}" is outside ${ARTIFACT_ROOT}/`);
    const target = relative ? join(destination, relative) : destination;
    if (entry.header.type === 'directory') {
      await mkdir(target, { recursive: true });
      entry.resume();
    } else if (entry.header.type === 'file') {
      await mkdir(dirname(target), { recursive: true });
      // NOTE: `flags: 'wx'`: an entry never writes through a name an earlier entry made.
      await pipeline(Readable.from(entry), createWriteStream(target, { mode: (entry.header.mode ?? 0o644) & 0o777 || 0o644, flags: 'wx' }));
    } else {
      // Symlinks could point outside the destination; inputs are plain files and directories.
      entry.resume();
    }
  }
  await feeding;
}

/** The path of an entry relative to the artifact root, or undefined if it escapes it. */
function entryPath(name: string): string | undefined {
  const clean = normalize(name).replace(/\/+$/, '');
  if (clean === ARTIFACT_ROOT) return '';
  if (!clean.startsWith(`${ARTIFACT_ROOT}${sep}`)) return undefined;
  const rest = clean.slice(ARTIFACT_ROOT.length + 1);
  return rest.split(sep).includes('..') ? undefined : rest;
}
