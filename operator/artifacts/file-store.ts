// The file:// artifact store: objects are read-only files under one root directory (a volume
// the chart mounts, or a temp dir in tests). Writes go to a temp file in <root>/.ferry-tmp and
// are hard-linked into place, so readers never see a partially written object.
import { createHash, randomUUID } from 'node:crypto';
import type { Stats } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { chmod, link, mkdir, open, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ObjectExistsError, ObjectNotFoundError, ObjectTooLargeError, blobKey, collectAtMost } from './store.ts';
import type { ArtifactStore, StoredObject } from './store.ts';

/**
 * Where in-flight writes live: a reserved first key segment, never listed. Shared with the GCS
 * store, which keeps its temporary upload objects under the same name.
 */
export const tmpDirName = '.ferry-tmp';

export class FileArtifactStore implements ArtifactStore {
  readonly root: string;
  /** Absolute directory path of the root, without a trailing separator. */
  readonly rootDir: string;

  /** `rootUri` is `file:///absolute/path`; the directory is created on first write. */
  constructor(rootUri: string) {
    this.rootDir = parseFileRoot(rootUri);
    this.root = pathToFileURL(this.rootDir).href;
  }

  uriFor(key: string): string {
    checkKey(key, this.root);
    return pathToFileURL(join(this.rootDir, ...key.split('/'))).href;
  }

  keyOf(uri: string): string {
    return relative(this.rootDir, this.pathOf(uri)).split(sep).join('/');
  }

  async putBlob(namespace: string, source: Readable): Promise<StoredObject> {
    checkKey(namespace, this.root);
    const { tmp, hex, size } = await this.streamToTemp(this.root, 'putBlob', source);
    const key = blobKey(namespace, hex);
    const uri = this.uriFor(key);
    try {
      // An existing blob has the same content by construction: keep it, drop ours.
      await this.linkIntoPlace(tmp, key, uri, 'putBlob');
    } catch (err) {
      if (!(err instanceof ObjectExistsError)) throw err;
    } finally {
      await unlinkQuietly(tmp);
    }
    return { uri, digest: `sha256:${hex}`, size };
  }

  /** Like createOnce, streaming: the artifact server writes request bodies with it. */
  async createOnceFrom(key: string, source: Readable): Promise<StoredObject> {
    const uri = this.uriFor(key);
    const { tmp, hex, size } = await this.streamToTemp(uri, 'createOnce', source);
    try {
      await this.linkIntoPlace(tmp, key, uri, 'createOnce');
    } finally {
      await unlinkQuietly(tmp);
    }
    return { uri, digest: `sha256:${hex}`, size };
  }

  async createOnce(key: string, data: Uint8Array): Promise<StoredObject> {
    const uri = this.uriFor(key);
    const tmp = await this.writeTemp(uri, 'createOnce', async (path) => {
      await writeFile(path, data, { flag: 'wx', mode: 0o600, flush: true });
    });
    try {
      await this.linkIntoPlace(tmp, key, uri, 'createOnce');
    } finally {
      await unlinkQuietly(tmp);
    }
    const hex = createHash('sha256').update(data).digest('hex');
    return { uri, digest: `sha256:${hex}`, size: data.byteLength };
  }

  async read(uri: string): Promise<Readable> {
    return (await this.readWithSize(uri)).body;
  }

  /** A stream of the object and its size (the artifact server sends it as Content-Length). */
  async readWithSize(uri: string): Promise<{ body: Readable; size: number }> {
    const path = this.pathOf(uri);
    const fh = await open(path, 'r').catch((err: unknown) => {
      throw isCode(err, 'ENOENT', 'ENOTDIR') ? new ObjectNotFoundError(uri) : wrap(err, `read ${uri}`);
    });
    let stats: Stats;
    try {
      stats = await fh.stat();
    } catch (err) {
      await fh.close();
      throw wrap(err, `read ${uri}`);
    }
    if (!stats.isFile()) { // a directory is not an object
      await fh.close();
      throw new ObjectNotFoundError(uri);
    }
    // autoClose: the handle closes when the stream ends or is destroyed
    return { body: fh.createReadStream(), size: stats.size };
  }

  async readAll(uri: string, maxBytes: number): Promise<Buffer> {
    const path = this.pathOf(uri);
    const fh = await open(path, 'r').catch((err: unknown) => {
      throw isCode(err, 'ENOENT', 'ENOTDIR') ? new ObjectNotFoundError(uri) : wrap(err, `readAll ${uri}`);
    });
    try {
      const stats = await fh.stat();
      if (!stats.isFile()) throw new ObjectNotFoundError(uri);
      if (stats.size > maxBytes) throw new ObjectTooLargeError(uri, maxBytes);
      const stream = fh.createReadStream({ autoClose: false });
      return await collectAtMost(stream, maxBytes, uri, () => stream.destroy());
    } catch (err) {
      throw wrap(err, `readAll ${uri}`);
    } finally {
      await fh.close();
    }
  }

  async exists(uri: string): Promise<boolean> {
    const stats = await statOrUndefined(this.pathOf(uri), `exists ${uri}`);
    return stats?.isFile() ?? false;
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(prefix, this.root);
    // Prefixes match like GCS (plain string prefixes), so walk the deepest whole directory
    // the prefix names and filter the rest.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const start = dirPart === '' ? this.rootDir : join(this.rootDir, ...dirPart.split('/'));
    let entries;
    try {
      entries = await readdir(start, { recursive: true, withFileTypes: true });
    } catch (err) {
      if (isCode(err, 'ENOENT', 'ENOTDIR')) return [];
      throw wrap(err, `list ${this.root} prefix ${JSON.stringify(prefix)}`);
    }
    const keys: string[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const key = relative(this.rootDir, join(entry.parentPath, entry.name)).split(sep).join('/');
      if (key.startsWith(`${tmpDirName}/`) || !key.startsWith(prefix)) continue;
      keys.push(key);
    }
    return keys.sort();
  }

  async delete(uri: string): Promise<void> {
    // NOTE: unlink needs write permission on the directory, not on the read-only file.
    await unlink(this.pathOf(uri)).catch((err: unknown) => {
      if (!isCode(err, 'ENOENT', 'ENOTDIR')) throw wrap(err, `delete ${uri}`);
    });
  }

  /** Absolute path of a URI under this root; throws for anything outside it. */
  pathOf(uri: string): string {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (err) {
      throw new Error(`${uri} is not a file:// URI of the artifact store ${this.root}: ${errorMessage(err)}`);
    }
    const rel = relative(this.rootDir, path);
    if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
      throw new Error(`${uri} does not name an object under the artifact store ${this.root}`);
    }
    checkKey(rel.split(sep).join('/'), this.root);
    return path;
  }

  /** Streams `source` into a fresh temp file, hashing as it goes (bounded memory). */
  private async streamToTemp(target: string, operation: string, source: Readable): Promise<{ tmp: string; hex: string; size: number }> {
    const hash = createHash('sha256');
    let size = 0;
    const tmp = await this.writeTemp(target, operation, async (path) => {
      // NOTE: pipeline keeps memory bounded by the streams' highWaterMarks and destroys
      // `source` on any failure; `flush` fsyncs the file before it is closed.
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Uint8Array | string>) {
          for await (const chunk of chunks) {
            const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
            hash.update(bytes);
            size += bytes.length;
            yield bytes;
          }
        },
        createWriteStream(path, { flags: 'wx', mode: 0o600, flush: true }),
      );
    });
    return { tmp, hex: hash.digest('hex'), size };
  }

  /**
   * Lets `fill` create and write (exclusively, with fsync) a fresh temp file, then makes it
   * read-only. The temp dir sits under the root, so the file can be linked into place.
   */
  private async writeTemp(target: string, operation: string, fill: (path: string) => Promise<void>): Promise<string> {
    const tmpDir = join(this.rootDir, tmpDirName);
    const tmp = join(tmpDir, randomUUID());
    try {
      await mkdir(tmpDir, { recursive: true });
      await fill(tmp);
      await chmod(tmp, 0o444);
      return tmp;
    } catch (err) {
      await unlinkQuietly(tmp);
      throw wrap(err, `${operation} ${target}: writing temp file ${tmp}`);
    }
  }

  /**
   * Hard-links a finished temp file to `key`: link(2) never replaces an existing name, so
   * exactly one of several concurrent writers wins and the loser gets EEXIST.
   */
  private async linkIntoPlace(tmp: string, key: string, uri: string, operation: string): Promise<void> {
    const target = join(this.rootDir, ...key.split('/'));
    try {
      await mkdir(dirname(target), { recursive: true });
      await link(tmp, target);
    } catch (err) {
      if (isCode(err, 'EEXIST')) throw new ObjectExistsError(uri);
      throw wrap(err, `${operation} ${uri}: linking ${tmp} into place`);
    }
    await syncDir(dirname(target), `${operation} ${uri}`);
  }
}

/** `file:///abs/path` → `/abs/path` (no trailing slash), or a clear error. */
export function parseFileRoot(rootUri: string): string {
  // Checked on the raw string: the URL parser would turn file:relative into file:///relative.
  if (!/^file:\/\/(localhost)?\//.test(rootUri)) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must be file:///absolute/path (three slashes, no host)`);
  }
  let url: URL;
  try {
    url = new URL(rootUri);
  } catch (err) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} is not a valid URL: ${errorMessage(err)}`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must not have a query or fragment`);
  }
  // Also on the raw string: the URL parser resolves '..' silently.
  const rawPath = rootUri.replace(/^file:\/\/(localhost)?/, '');
  if (rawPath.split('/').some((s) => s === '..' || s.toLowerCase() === '%2e%2e')) {
    throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must not contain '..'`);
  }
  const path = fileURLToPath(url);
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') throw new Error(`artifact store URI ${JSON.stringify(rootUri)} must not be the filesystem root`);
  return trimmed;
}

/**
 * The key grammar of every store (the GCS store imports it; filesystem paths are the strictest
 * case). Keys are relative paths with `/` separators. Anything that could escape the root or alias
 * another key (`..`, `.`, empty segments, absolute paths, backslashes) is refused, as is the
 * reserved temp directory.
 */
export function checkKey(key: string, root: string): void {
  const problem = keyProblem(key);
  if (problem !== undefined) throw new Error(`invalid artifact key ${JSON.stringify(key)} under ${root}: ${problem}`);
}

/** A list prefix: empty, or a key that may end with `/` or in the middle of a segment. */
export function checkPrefix(prefix: string, root: string): void {
  if (prefix === '') return;
  // A prefix may end in a partial segment ("runs/a" matches "runs/abc/x") or a slash.
  const problem = keyProblem(prefix.endsWith('/') ? `${prefix}x` : prefix);
  if (problem !== undefined) throw new Error(`invalid artifact key prefix ${JSON.stringify(prefix)} under ${root}: ${problem}`);
}

function keyProblem(key: string): string | undefined {
  if (key === '') return 'empty';
  if (key.startsWith('/')) return 'absolute (keys are relative to the store root)';
  if (key.includes('\\')) return 'contains a backslash';
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'contains a control character';
  const segments = key.split('/');
  if (segments.some((s) => s === '..')) return "contains a '..' segment (escapes the root)";
  if (segments.some((s) => s === '.' || s === '')) return "contains an empty or '.' segment";
  if (segments[0] === tmpDirName) return `${tmpDirName}/ is reserved for in-flight writes`;
  return undefined;
}

async function statOrUndefined(path: string, context: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if (isCode(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw wrap(err, context);
  }
}

/** fsync a directory so a new link survives a crash (the file itself was fsynced before). */
async function syncDir(dir: string, context: string): Promise<void> {
  const fh = await open(dir, 'r').catch((err: unknown) => { throw wrap(err, `${context}: opening ${dir} to fsync`); });
  try {
    await fh.sync();
  } catch (err) {
    // Some filesystems (and platforms) refuse fsync on directories; the data is already synced.
    if (!isCode(err, 'EINVAL', 'EISDIR', 'EBADF', 'ENOTSUP')) throw wrap(err, `${context}: fsync ${dir}`);
  } finally {
    await fh.close();
  }
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined); // best effort: a leftover temp file is harmless
}

function isCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && codes.includes(err.code);
}

function wrap(err: unknown, context: string): Error {
  if (err instanceof ObjectExistsError || err instanceof ObjectNotFoundError || err instanceof ObjectTooLargeError) return err;
  return new Error(`${context}: ${errorMessage(err)}`, { cause: err });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
