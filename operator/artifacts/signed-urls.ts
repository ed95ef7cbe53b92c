// Signed object URLs of the artifact server (artifact-server.ts): the operator, which holds the
// signing key, hands step Pods URLs that allow one operation on one key until a deadline, so a
// Pod holds no store credential and can reach nothing else. Pure: HMAC-SHA256 over the method,
// the key and the expiry; verified in constant time.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a URL allows: read (GET and HEAD), create once (PUT), delete, list a prefix, or write a namespace's blob. */
export type GrantMethod = 'GET' | 'PUT' | 'DELETE' | 'LIST' | 'BLOB';

export interface UrlGrant {
  method: GrantMethod;
  /** An object key; a key prefix for LIST; a namespace for BLOB. */
  key: string;
  /** Whole seconds since the epoch. */
  expiresAt: number;
}

/** The smallest signing key accepted: 32 random bytes. */
export const SIGNING_KEY_MIN_BYTES = 32;

const OBJECTS_PATH = '/v1/objects/';

/** The path and query of a signed request for `grant` (relative to the server's base URL). */
export function signedPath(signingKey: Buffer, grant: UrlGrant): string {
  const path = grant.method === 'LIST' ? '/v1/list' : grant.method === 'BLOB' ? `/v1/blobs/${encodeKey(grant.key)}` : `${OBJECTS_PATH}${encodeKey(grant.key)}`;
  const query = new URLSearchParams({ method: grant.method, expires: String(grant.expiresAt), signature: signatureOf(signingKey, grant) });
  if (grant.method === 'LIST') query.set('prefix', grant.key);
  return `${path}?${query.toString()}`;
}

export function signedUrl(baseUrl: string, signingKey: Buffer, grant: UrlGrant): string {
  return `${baseUrl.replace(/\/+$/, '')}${signedPath(signingKey, grant)}`;
}

export type Verdict = { ok: true; grant: UrlGrant } | { ok: false; status: 400 | 403 | 404 | 405; reason: string };

/**
 * Checks a request against its signature: the HTTP method must fit the granted one, the grant
 * must not have expired, and the signature must match. NOTE: the reasons are generic on
 * purpose; they name nothing about what the store holds.
 */
export function verifyRequest(signingKey: Buffer, httpMethod: string, url: URL, nowSeconds: number): Verdict {
  const query = url.searchParams;
  const method = query.get('method') as GrantMethod | null;
  const expiresAt = Number(query.get('expires'));
  const signature = query.get('signature') ?? '';
  let key: string;
  try {
    if (url.pathname === '/v1/list') key = query.get('prefix') ?? '';
    else if (url.pathname.startsWith('/v1/blobs/')) key = decodeKey(url.pathname.slice('/v1/blobs/'.length));
    else if (url.pathname.startsWith(OBJECTS_PATH)) key = decodeKey(url.pathname.slice(OBJECTS_PATH.length));
    else return { ok: false, status: 404, reason: 'no such endpoint' };
  } catch {
    return { ok: false, status: 400, reason: 'the path is not a valid key' };
  }
  if (method === null || !Number.isInteger(expiresAt) || signature === '') return { ok: false, status: 403, reason: 'the URL is not signed' };
  const allowed: Record<GrantMethod, string[]> = { GET: ['GET', 'HEAD'], PUT: ['PUT'], DELETE: ['DELETE'], LIST: ['GET'], BLOB: ['POST'] };
  // NOTE: own properties only: `method` comes from the query, and names like "constructor"
  // exist on every object (looking them up would throw below instead of refusing).
  if (!Object.hasOwn(allowed, method) || !allowed[method].includes(httpMethod)) return { ok: false, status: 405, reason: `the URL does not allow ${httpMethod}` };
  const grant: UrlGrant = { method, key, expiresAt };
  const expected = Buffer.from(signatureOf(signingKey, grant));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, status: 403, reason: 'the signature does not match' };
  if (expiresAt <= nowSeconds) return { ok: false, status: 403, reason: 'the URL has expired' };
  return { ok: true, grant };
}

function signatureOf(signingKey: Buffer, grant: UrlGrant): string {
  return createHmac('sha256', signingKey).update(`${grant.method}\n${grant.key}\n${grant.expiresAt}`).digest('base64url');
}

/** Keys keep their slashes in the path; each segment is percent-encoded. */
const encodeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/');
const decodeKey = (path: string) => path.split('/').map(decodeURIComponent).join('/');
