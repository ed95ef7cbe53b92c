// Runs the real operator (operator/main.ts) as a child process against the test API server,
// the way it runs in production, and keeps its JSON log lines for assertions; reads its /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetrics, type Sample } from '../../bench/lib/prom.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export interface LogLine {
  msg: string;
  level: string;
  [field: string]: unknown;
}

export interface OperatorProcess {
  logs: LogLine[];
  pid: number;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The samples of the operator's /metrics, on the port its 'operator starting' line names (FERRY_HTTP_PORT is 0). */
  metrics(): Promise<Sample[]>;
  /** SIGKILL: a crash, no cleanup. */
  kill(): Promise<void>;
  /** SIGTERM: a graceful stop; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface OperatorOptions {
  kubeconfigPath: string;
  namespaces: string[];
  leaseName: string;
  leaseNamespace: string;
  env?: Record<string, string>;
  /** The program to run: operator/main.ts by default; the bench runs the compiled JavaScript the image ships. */
  entry?: string;
  /**
   * Short lease timings (4 s, renewed within 3 s) for the tests of failover. Others get the
   * operator's defaults: on a busy 2-core machine a 3 s renewal can be missed, and an operator
   * that loses its Lease exits (nothing restarts it here, as a Deployment would).
   */
  failover?: boolean;
}

export function startOperator(options: OperatorOptions): OperatorProcess {
  const child: ChildProcess = spawn(process.execPath, [options.entry ?? join(ROOT, 'operator', 'main.ts'), 'operator'], {
    env: {
      ...process.env,
      KUBECONFIG: options.kubeconfigPath,
      FERRY_NAMESPACES: options.namespaces.join(','),
      FERRY_LEASE_NAME: options.leaseName,
      FERRY_LEASE_NAMESPACE: options.leaseNamespace,
      FERRY_HTTP_PORT: '0',
      // Operators of one test namespace share a store, as replicas of one deployment do.
      FERRY_ARTIFACT_STORE: `file://${join(tmpdir(), 'ferry-test-artifacts', options.leaseNamespace)}`,
      // The file store is served to step Pods by an artifact server inside the operator process.
      FERRY_ARTIFACT_SERVER_LISTEN: '127.0.0.1:0',
      FERRY_LOG_LEVEL: 'debug',
      ...(options.failover
        ? { FERRY_LEASE_DURATION_SECONDS: '4', FERRY_RENEW_DEADLINE_SECONDS: '3', FERRY_RETRY_PERIOD_SECONDS: '1' }
        : { FERRY_LEASE_DURATION_SECONDS: '15', FERRY_RENEW_DEADLINE_SECONDS: '10', FERRY_RETRY_PERIOD_SECONDS: '2' }),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const waiters: Array<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const text of lines) {
      if (!text.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text, level: 'raw' };
      }
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));

  return {
    logs,
    pid: child.pid ?? -1,
    waitForLog(predicate, timeoutMs = 30_000) {
      const seen = logs.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`operator log line not seen in ${timeoutMs} ms; stderr: ${stderr.join('').slice(-2000)}; last logs: ${JSON.stringify(logs.slice(-5))}`));
        }, timeoutMs);
        waiters.push({ predicate, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async metrics() {
      const starting = await this.waitForLog((l) => l.msg === 'operator starting');
      const response = await fetch(`http://127.0.0.1:${Number(starting.httpPort)}/metrics`);
      if (!response.ok) throw new Error(`GET /metrics: ${response.status}`);
      return parseMetrics(await response.text());
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}
