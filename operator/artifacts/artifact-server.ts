// The artifact server: serves a file:// store over HTTP to requests the operator signed
// (signed-urls.ts). It is the same image with another entry point (`ferry artifact-server`),
// its own Deployment and volume in the chart, so step Pods in every namespace can use the
// default store without mounting it, and artifact bytes never pass through the operator.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../observability/logger.ts';
import type { FileArtifactStore } from './file-store.ts';
import { verifyRequest } from './signed-urls.ts';
import { ObjectExistsError, ObjectNotFoundError } from './store.ts';

export interface ArtifactServerOptions {
  store: FileArtifactStore;
  signingKey: Buffer;
  log: Logger;
  /** Seconds since the epoch; injected for tests. */
  nowSeconds?: () => number;
}

export interface RunningArtifactServer {
  server: Server;
  /** e.g. http://127.0.0.1:8081 */
  url: string;
  close(): Promise<void>;
}

/** Handles one request; every failure becomes a status with a generic message. */
export function artifactRequestHandler(options: ArtifactServerOptions) {
  const { store, signingKey, log } = options;
  const now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://artifact-server');
    if (url.pathname === '/healthz') return reply(res, 200, 'ok\n');
    const verdict = verifyRequest(signingKey, req.method ?? '', url, now());
    if (!verdict.ok) {
      req.resume();
      return reply(res, verdict.status, `${verdict.reason}\n`);
    }
    const { method, key } = verdict.grant;
    const started = Date.now();
    try {
      switch (method) {
        case 'GET': {
          const { body, size } = await store.readWithSize(store.uriFor(key));
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
          if (req.method === 'HEAD') {
            body.destroy();
            res.end();
          } else {
            await pipeline(body, res);
          }
          break;
        }
        case 'PUT': {
          const stored = await store.createOnceFrom(key, req);
          replyJson(res, 201, stored);
          log.info('stored object', { key, bytes: stored.size, ms: Date.now() - started });
          break;
        }
        case 'BLOB': {
          const stored = await store.putBlob(key, req);
          replyJson(res, 201, stored);
          log.info('stored blob', { key: store.keyOf(stored.uri), bytes: stored.size, ms: Date.now() - started });
          break;
        }
        case 'DELETE':
          req.resume();
          await store.delete(store.uriFor(key));
          reply(res, 204, '');
          break;
        case 'LIST':
          replyJson(res, 200, { keys: await store.list(key) });
          break;
      }
    } catch (err) {
      req.resume();
      if (err instanceof ObjectNotFoundError) return replyIfOpen(res, 404, 'not found\n');
      if (err instanceof ObjectExistsError) return replyIfOpen(res, 412, 'already exists\n');
      log.error('artifact request failed', { method, key, error: err instanceof Error ? err.message : String(err) });
      replyIfOpen(res, 500, 'internal error\n');
    }
  };
}

export async function startArtifactServer(options: ArtifactServerOptions & { host: string; port: number }): Promise<RunningArtifactServer> {
  const handle = artifactRequestHandler(options);
  const server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  // Uploads of large artifacts may be slow; a stalled client is cut off by the socket timeout.
  server.requestTimeout = 0;
  server.timeout = 5 * 60 * 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    server,
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' }).end(text);
}

function replyJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}

function replyIfOpen(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) res.destroy();
  else reply(res, status, text);
}
