// How the agent reads and writes objects through signed URLs: a GET streamed into the input's
// extraction, a create-once PUT streamed from the output's tar. Bodies are never buffered
// whole; a refused URL (expired, not signed for this object) fails with what to do next.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { StoredObject } from '../artifacts/store.ts';

export class ObjectAccessError extends Error {}

export async function fetchObject(url: string, uri: string, headers: Record<string, string> = {}): Promise<Readable> {
  const res = await send(url, { method: 'GET', headers }, `reading ${uri}`);
  if (!res.body) throw new ObjectAccessError(`reading ${uri}: the artifact store sent no body`);
  return Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
}

/** Uploads `body` to a signed create-once URL (with the headers it was signed with), hashing what it sends. */
export async function uploadObject(url: string, uri: string, body: Readable, headers: Record<string, string> = {}): Promise<StoredObject> {
  const hash = createHash('sha256');
  let size = 0;
  const counted = body.map((chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
    return chunk;
  });
  await send(url, { method: 'PUT', headers, body: Readable.toWeb(counted) as ReadableStream, duplex: 'half' } as RequestInit, `writing ${uri}`);
  return { uri, digest: `sha256:${hash.digest('hex')}`, size };
}

async function send(url: string, init: RequestInit, what: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ObjectAccessError(`${what}: the artifact store is unreachable: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (res.ok) return res;
  const detail = (await res.text().catch(() => '')).trim().slice(0, 200);
  const hint = res.status === 403 ? ' (a URL expires: a Pod that waited longer than its URLs live is retried with new ones)' : res.status === 412 ? ' (an earlier attempt wrote it already)' : '';
  throw new ObjectAccessError(`${what}: HTTP ${res.status}${detail ? ` ${detail}` : ''}${hint}`);
}
