// How the agent reads and writes objects through signed URLs: a GET streamed into the input's
// extraction, a create-once PUT streamed from the output's tar. Bodies are never buffered
// whole: undici's request streams with backpressure both ways (fetch's upload path reads a
// Node stream ahead without bound: a 1 GiB upload peaked at 1.1 GiB, bench/agent-memory.ts).
// A refused URL (expired, not signed for this object) fails with what happens next.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { StoredObject } from '../artifacts/store.ts';

export class ObjectAccessError extends Error {}

/** A transfer that stalls (no bytes either way) this long is cut off. */
const IDLE_TIMEOUT_MS = 5 * 60_000;

export async function fetchObject(url: string, uri: string, headers: Record<string, string> = {}): Promise<Readable> {
  return (await send(url, { method: 'GET', headers }, `reading ${uri}`)).body;
}

export interface UploadOptions {
  headers?: Record<string, string>;
  /** Write the body to a file here first and send it with its length (a store that refuses chunked uploads). */
  spoolDir?: string;
}

/** Uploads `body` to a signed create-once URL (with the headers it was signed with), hashing what it sends. */
export async function uploadObject(url: string, uri: string, body: Readable, options: UploadOptions = {}): Promise<StoredObject> {
  if (options.spoolDir !== undefined) return uploadSpooled(url, uri, body, options.spoolDir, options.headers ?? {});
  const headers = options.headers ?? {};
  const hash = createHash('sha256');
  let size = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  body.once('error', (err) => counted.destroy(err));
  const res = await send(url, { method: 'PUT', headers, body: body.pipe(counted) }, `writing ${uri}`);
  res.body.resume();
  return { uri, digest: `sha256:${hash.digest('hex')}`, size };
}

/** The body goes to a temp file (hashed on the way), then up with Content-Length; the file is removed. */
async function uploadSpooled(url: string, uri: string, body: Readable, dir: string, headers: Record<string, string>): Promise<StoredObject> {
  const path = join(dir, `.upload-${randomUUID()}`);
  const hash = createHash('sha256');
  try {
    await pipeline(body, async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    }, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
    const { size } = await stat(path);
    const res = await send(url, { method: 'PUT', headers: { ...headers, 'content-length': String(size) }, body: createReadStream(path) }, `writing ${uri}`);
    res.body.resume();
    return { uri, digest: `sha256:${hash.digest('hex')}`, size };
  } finally {
    await rm(path, { force: true });
  }
}

async function send(url: string, options: { method: 'GET' | 'PUT'; headers: Record<string, string>; body?: Readable }, what: string) {
  // Loaded on first use: a step that moves nothing does not pay for it.
  const { request } = await import('undici');
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, { ...options, headersTimeout: IDLE_TIMEOUT_MS, bodyTimeout: IDLE_TIMEOUT_MS });
  } catch (err) {
    throw new ObjectAccessError(`${what}: the artifact store is unreachable: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return res;
  const detail = (await res.body.text().catch(() => '')).trim().slice(0, 200);
  const hint = res.statusCode === 403 ? ' (a URL expires: a Pod that waited longer than its URLs live is retried with new ones)' : res.statusCode === 412 ? ' (an earlier attempt wrote it already)' : '';
  throw new ObjectAccessError(`${what}: HTTP ${res.statusCode}${detail ? ` ${detail}` : ''}${hint}`);
}
