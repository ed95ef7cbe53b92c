// Serves /healthz (the process is alive), /readyz (caches synced, dependencies reachable)
// and /metrics (Prometheus text) on one port.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  check(): string | undefined; // undefined when ready, else why not
}

export async function startHttpServer(options: {
  port: number;
  host?: string;
  registry: Registry;
  readiness: ReadinessCheck[];
}): Promise<Server & { port: number }> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const failing = options.readiness.flatMap((r) => {
        const why = r.check();
        return why ? [`${r.name}: ${why}`] : [];
      });
      response.writeHead(failing.length ? 503 : 200, { 'content-type': 'text/plain' }).end(failing.length ? failing.join('\n') + '\n' : 'ok\n');
    } else if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (err: unknown) => response.writeHead(500).end(String(err)),
      );
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return Object.assign(server, { port });
}
