// Ferry as a benchmark engine: the real operator as a child process with its default settings,
// run as the image runs it (the JavaScript tsconfig.build.json compiles, with the Containerfile's
// environment), a Pipeline per shape and a PipelineRun per run. Steps declare no outputs and
// have caching disabled, so every step of every run (every item of a forEach) is a Pod, as in Argo.
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubeObject } from '../../operator/api/v1alpha1/common.ts';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import type { StepSpec } from '../../operator/api/v1alpha1/pipeline.ts';
import { LABEL_RUN, LABEL_STEP } from '../../operator/api/v1alpha1/labels.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import { PIPELINE_RUNS, PIPELINES } from '../../operator/kube/resources.ts';
import { OPERATOR_VERSION } from '../../operator/version.ts';
import { pipeline, pipelineRun, TEST_IMAGE } from '../../test/builders.ts';
import { startOperator } from '../../test/harness/operator-process.ts';
import { itemList, type Controller, type Engine, type EngineContext, type Shape } from './engine.ts';
import { parseMetrics, sumBy } from './prom.ts';
import { quiet } from './workloads.ts';

/** The harness's operator-process.ts shortens the lease and logs at debug level for tests; put the defaults back. */
const DEFAULTS_RESTORED = {
  FERRY_LOG_LEVEL: 'info',
  FERRY_LEASE_DURATION_SECONDS: '15',
  FERRY_RENEW_DEADLINE_SECONDS: '10',
  FERRY_RETRY_PERIOD_SECONDS: '2',
};

const ROOT = join(import.meta.dirname, '..', '..');

/** How the operator is run: `js` as the image ships it (the default), `ts` by type stripping as `npm start` does. */
export type FerryBuild = 'js' | 'ts';

/** The environment the image sets (ENV in the Containerfile) that changes how Node runs the operator. */
export async function shippedEnvironment(containerfile = join(ROOT, 'Containerfile')): Promise<Record<string, string>> {
  const text = (await readFile(containerfile, 'utf8')).replace(/\\\n/g, ' ');
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^ENV\s+(.*)$/.exec(line.trim());
    if (!match) continue;
    for (const [, key = '', quoted, bare] of match[1]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g)) {
      env[key] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare ?? '';
    }
  }
  return Object.fromEntries(Object.entries(env).filter(([k]) => k === 'NODE_ENV' || k === 'NODE_OPTIONS'));
}

/** Compiles the operator as scripts/build-image.sh does, under dist/ so that node_modules resolve; returns main.js. */
async function compileOperator(): Promise<{ entry: string; dir: string }> {
  await mkdir(join(ROOT, 'dist'), { recursive: true });
  const dir = await mkdtemp(join(ROOT, 'dist', 'bench-'));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const child = spawn(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve, reject) => child.on('error', reject).on('close', resolve));
  if (code !== 0) throw new Error(`compiling the operator (tsc -p tsconfig.build.json) failed: ${output.slice(-2000)}`);
  return { entry: join(dir, 'operator', 'main.js'), dir };
}

export async function ferryEngine(ctx: EngineContext, extraEnv: Record<string, string> = {}, build: FerryBuild = 'js'): Promise<Engine & { dispose(): Promise<void> }> {
  const { client, namespace } = ctx;
  const compiled = build === 'js' ? await compileOperator() : undefined;
  const shipped = build === 'js' ? await shippedEnvironment() : {};
  return {
    name: 'ferry',
    version: OPERATOR_VERSION,
    runResource: PIPELINE_RUNS,
    settings: {
      namespaces: `${namespace} (both controllers watch only the bench namespace)`,
      artifactStore: 'a temporary file:// store (steps declare no outputs, so it is only written the frozen configurations)',
      program: build === 'js'
        ? `the JavaScript the image ships (tsconfig.build.json), with the Containerfile's ${Object.entries(shipped).map(([k, v]) => `${k}=${v}`).join(' ')}`
        : 'operator/main.ts by type stripping (--ferry-build=ts)',
      ...Object.fromEntries(Object.entries(extraEnv).map(([k, v]) => [k, `${v} (set by --ferry-env)`])),
    },

    async dispose() {
      if (compiled) await rm(compiled.dir, { recursive: true, force: true });
    },

    async start(): Promise<Controller> {
      const operator = startOperator({
        kubeconfigPath: ctx.kubeconfigPath,
        namespaces: [namespace],
        leaseName: 'ferry-bench',
        leaseNamespace: namespace,
        env: { ...DEFAULTS_RESTORED, ...shipped, FERRY_ARTIFACT_STORE: `file://${join(ctx.workDir, 'ferry-artifacts')}`, FERRY_ARTIFACT_SERVER_LISTEN: '127.0.0.1:0', ...extraEnv },
        ...(compiled ? { entry: compiled.entry } : {}),
      });
      const starting = await operator.waitForLog((l) => l.msg === 'operator starting', 60_000);
      const port = Number(starting.httpPort);
      await operator.waitForLog((l) => l.msg === 'became leader', 60_000);
      await operator.waitForLog((l) => l.msg === 'caches synced', 300_000);
      // As for Argo: start measuring once the start-up pass over existing runs is done.
      await quiet(operator.pid);
      // Don't let the harness keep every log line of a long benchmark in memory; keep them in
      // <workDir>/ferry-operator.log instead (as Argo's go to workflow-controller.log).
      const logPath = join(ctx.workDir, 'ferry-operator.log');
      let written = 0;
      const flush = async () => {
        const lines = operator.logs.slice(written);
        operator.logs.splice(0, Math.max(0, operator.logs.length - 1000));
        written = operator.logs.length; // what is left was in `lines` or written before
        if (lines.length > 0) await appendFile(logPath, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      };
      await flush();
      const trim = setInterval(() => void flush().catch(() => undefined), 5_000);
      return {
        pid: operator.pid,
        async metrics() {
          const response = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
          return response?.ok ? parseMetrics(await response.text()) : undefined;
        },
        async stop() {
          clearInterval(trim);
          const code = await operator.stop();
          await flush().catch(() => undefined);
          if (code !== 0) {
            // The last errors and warnings say why (a lost lease is warned about before the exit's error).
            const why = operator.logs.filter((l) => l.level === 'error' || l.level === 'warn').slice(-8);
            process.stderr.write(`ferry operator exited with ${code} (its log: ${logPath}): ${JSON.stringify(why)}\n`);
          }
        },
      };
    },

    async define(shape: Shape): Promise<void> {
      const retries = ctx.retries > 0 ? { retries: { limit: ctx.retries, backoffSeconds: 1 } } : {};
      const steps: StepSpec[] = shape.steps.map((s) => ({
        name: s.name,
        image: TEST_IMAGE,
        // An item's Pod is told its item, as Argo's is ({{item}}).
        command: s.items === undefined ? ['run', s.name] : ['run', s.name, '$(item)'],
        ...(s.dependsOn.length > 0 ? { dependsOn: s.dependsOn } : {}),
        // Without --foreach-parallelism no maxParallelism (and the run sets no parallelism): every item at once.
        ...(s.items !== undefined ? { forEach: { items: itemList(s.items), ...(s.parallelism ? { maxParallelism: s.parallelism } : {}) } } : {}),
        cache: { policy: 'Disabled' },
        ...retries,
      }));
      await client.create(PIPELINES, namespace, pipeline({ name: shape.name, namespace, steps }));
    },

    async submit(shape: Shape, runName: string): Promise<void> {
      await client.create(PIPELINE_RUNS, namespace, pipelineRun({ name: runName, namespace, pipeline: shape.name }));
    },

    stepOf(pod: Pod) {
      const run = pod.metadata.labels?.[LABEL_RUN];
      const step = pod.metadata.labels?.[LABEL_STEP];
      return run && step ? { run, step } : undefined;
    },

    outcomeOf(object: KubeObject) {
      const phase = (object as PipelineRun).status?.phase;
      if (phase === 'Succeeded') return 'Succeeded';
      if (phase === 'Failed' || phase === 'Cancelled') return 'Failed';
      return undefined;
    },

    ownFigures(samples) {
      const sum = (name: string, labels: Record<string, string> = {}) => samples
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((total, s) => total + s.value, 0);
      const runController = { controller: 'pipelinerun' };
      const reconciles = sum('ferry_reconcile_duration_seconds_count', runController);
      return {
        pipelineRunReconciles: reconciles,
        reconcileSecondsMean: reconciles > 0 ? sum('ferry_reconcile_duration_seconds_sum', runController) / reconciles : NaN,
        reconcileErrors: sum('ferry_reconcile_total', { ...runController, result: 'error' }),
        requestsRejected409: sum('ferry_api_requests_total', { code: '409' }),
      };
    },

    clientRequests(samples) {
      return sumBy(samples, (s) => (s.name === 'ferry_api_requests_total' && s.labels.verb !== 'WATCH' ? s.labels.verb : undefined));
    },
  };
}
