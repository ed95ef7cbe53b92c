// A plain-HTTP proxy on 127.0.0.1 in front of the shared test API server, for integration tests
// that need to see or hold an operator's requests: it forwards everything (watch streams too),
// records each request on the test process's one clock, and can stall the ones a predicate
// picks. Point an operator at it with its kubeconfig (http://127.0.0.1:PORT, the same token).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import { loadKubeConfig } from '../../operator/kube/client.ts';

/** One request as the proxy saw it. Times are `performance.timeOrigin + performance.now()` of the test process. */
export interface ProxyRecord {
  /** When the request arrived (its head). */
  at: number;
  method: string;
  /** Path with query, as sent: `/api/v1/namespaces/ns/pods?labelSelector=...`. */
  path: string;
  /** The API server's status code; undefined while in flight, stalled, or if it never answered. */
  status?: number;
  /** When the API server's answer (its head) reached the proxy. */
  answeredAt?: number;
  /** The request body of a POST, PUT or PATCH, as text, at most BODY_CAP bytes. */
  body?: string;
  /** True if a stall held the request. */
  stalled?: boolean;
  /** True if the client went away before it was answered (an abort, a timeout, an exit). */
  abandoned?: boolean;
}

export type RequestMatcher = (request: { method: string; path: string }) => boolean;

export interface ApiProxy {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** A kubeconfig for the proxy: server `url`, the API server's token. */
  kubeconfigPath: string;
  /** Every request so far, in arrival order (the live array: filter it). */
  readonly records: ProxyRecord[];
  /**
   * From now on, holds requests that match unanswered: not forwarded until the returned
   * function (or unstall()) lets them go, and dropped if their client gives up first.
   */
  stall(matches: RequestMatcher): () => void;
  /** Ends every stall; held requests still wanted are forwarded. */
  unstall(): void;
  /** Stops listening and ends every connection, held requests and open watches included. */
  close(): Promise<void>;
}

export const BODY_CAP = 256 * 1024;

const now = () => performance.timeOrigin + performance.now();

const WITH_BODY = new Set(['POST', 'PUT', 'PATCH']);

/** Starts a proxy to the API server of `upstreamKubeconfig` (by default the shared one, FERRY_TEST_KUBECONFIG). */
export async function startApiProxy(upstreamKubeconfig = process.env.FERRY_TEST_KUBECONFIG): Promise<ApiProxy> {
  if (!upstreamKubeconfig) throw new Error('FERRY_TEST_KUBECONFIG is not set: run integration tests with test/global-setup.ts');
  const config = loadKubeConfig(upstreamKubeconfig);
  const cluster = config.getCurrentCluster();
  const token = config.getCurrentUser()?.token;
  if (!cluster || !token) throw new Error(`${upstreamKubeconfig}: no current cluster or no token`);
  const upstream = new URL(cluster.server);
  const tls: RequestOptions = cluster.caData
    ? { ca: Buffer.from(cluster.caData, 'base64').toString('utf8') }
    : { rejectUnauthorized: !cluster.skipTLSVerify };
  const agent = new Agent({ keepAlive: true });

  const records: ProxyRecord[] = [];
  const stalls = new Set<RequestMatcher>();
  const held = new Set<{ record: ProxyRecord; forward: () => void }>();
  const sockets = new Set<Socket>();
  let closed = false;

  const server = createServer((req, res) => {
    const record: ProxyRecord = { at: now(), method: req.method ?? 'GET', path: req.url ?? '/' };
    records.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (WITH_BODY.has(record.method)) record.body = body.subarray(0, BODY_CAP).toString('utf8');
      const forward = () => {
        if (!closed && !res.destroyed) send(req, res, record, body);
      };
      if (![...stalls].some((matches) => matches(record))) return forward();
      record.stalled = true;
      const entry = { record, forward };
      held.add(entry);
      res.on('close', () => held.delete(entry));
    });
    res.on('close', () => {
      if (record.status === undefined) record.abandoned = true;
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function send(req: IncomingMessage, res: ServerResponse, record: ProxyRecord, body: Buffer): void {
    const headers = { ...req.headers, host: upstream.host };
    delete headers.connection;
    delete headers['transfer-encoding'];
    if (body.length > 0) headers['content-length'] = String(body.length);
    const outgoing = httpsRequest(
      { ...tls, agent, hostname: upstream.hostname, port: upstream.port, method: record.method, path: record.path, headers },
      (answer) => {
        record.status = answer.statusCode ?? 0;
        record.answeredAt = now();
        res.writeHead(record.status, answer.headers);
        res.flushHeaders();
        answer.pipe(res); // a watch streams until either side ends it
        answer.on('error', () => res.destroy());
      },
    );
    outgoing.on('error', () => {
      if (res.headersSent || res.destroyed) return void res.destroy();
      Object.assign(record, { status: 502, answeredAt: now() });
      res.writeHead(502).end();
    });
    res.on('close', () => outgoing.destroy());
    outgoing.end(body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = await mkdtemp(join(tmpdir(), 'ferry-api-proxy-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, `apiVersion: v1
kind: Config
clusters:
  - name: ferry-proxy
    cluster:
      server: ${url}
      # client-node refuses an http:// server without this; plain http has nothing to verify.
      insecure-skip-tls-verify: true
users:
  - name: ferry-admin
    user:
      token: ${token}
contexts:
  - name: ferry-proxy
    context:
      cluster: ferry-proxy
      user: ferry-admin
current-context: ferry-proxy
`, { mode: 0o600 });

  const release = () => {
    for (const entry of [...held]) {
      if ([...stalls].some((matches) => matches(entry.record))) continue;
      held.delete(entry);
      entry.forward();
    }
  };

  return {
    url,
    kubeconfigPath,
    records,
    stall(matches) {
      stalls.add(matches);
      return () => {
        stalls.delete(matches);
        release();
      };
    },
    unstall() {
      stalls.clear();
      release();
    },
    async close() {
      if (closed) return;
      closed = true;
      held.clear();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await stopped;
      agent.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
