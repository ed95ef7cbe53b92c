// `npm run bench`: Ferry's controller and Argo Workflows' workflow-controller given the same
// workloads, one controller at a time, against one real kube-apiserver with KWOK-simulated
// Nodes and Pods (so the controllers, not containers, are measured). Prints a side-by-side
// table and writes bench/results/<date>.json; docs/performance.md explains the figures.
//
//   node bench/run.ts [--engines=ferry,argo] [--workloads=linear,fanout,steady,foreach-<N>,...] [--runs=60]
//     [--fanout=199] [--foreach-parallelism=0] [--rate=2] [--duration=30] [--step-delay-ms=1000] [--start-delay-ms=200]
//     [--failure=0] [--retries=0] [--retain=1000] [--retain-shape=single|linear] [--nodes=4]
//     [--timeout-s=900] [--out=bench/results/<date>.json] 
//     [--ferry-env=FERRY_API_QPS=100,...] [--ferry-build=js|ts] [--argo-args=--qps=50,--burst=100]
//     [--argo-env=DEFAULT_REQUEUE_TIME=1s]
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_FOREACH_ITEMS, MAX_STEPS } from '../operator/api/v1alpha1/pipeline.ts';
import { EVENTS, PODS, type Resource } from '../operator/kube/resources.ts';
import { startBenchCluster } from './lib/cluster.ts';
import { fanOut, linear, type Engine, type EngineContext, type Shape } from './lib/engine.ts';
import { ferryEngine } from './lib/ferry-engine.ts';
import { Observer } from './lib/observer.ts';
import { renderTable } from './lib/report.ts';
import { fillAndMeasure, forEachItems, forEachWorkload, runWorkload, type RetentionPoint, type WorkloadResult, type WorkloadSpec } from './lib/workloads.ts';

const CORE_EVENTS: Resource = { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true };

export interface BenchOptions {
  engines: string[];
  workloads: string[];
  runs: number;
  fanout: number;
  /** Most items of a foreach-<N> workload running at once, on both sides; 0: unlimited. */
  forEachParallelism: number;
  rate: number;
  duration: number;
  stepDelayMs: number;
  startDelayMs: number;
  failure: number;
  retries: number;
  retain: number[];
  retainShape: 'single' | 'linear';
  retainInflight: number;
  nodes: number;
  timeoutMs: number;
  out: string | undefined;
  quiet: boolean;
  /** Extra environment for Ferry's operator (experiments; the default is none: its default settings). */
  ferryEnv: Record<string, string>;
  /** js: the compiled JavaScript the image ships (default); ts: operator/main.ts by type stripping. */
  ferryBuild: 'js' | 'ts';
  /** Extra flags for Argo's workflow-controller (experiments, e.g. --qps=50,--burst=100). */
  argoArgs: string[];
  /** Extra environment for Argo's workflow-controller (experiments, e.g. DEFAULT_REQUEUE_TIME=1s). */
  argoEnv: Record<string, string>;
}

const FLAGS = {
  engines: { type: 'string', default: 'ferry,argo' },
  workloads: { type: 'string', default: 'linear,fanout,steady' },
  runs: { type: 'string', default: '60' },
  fanout: { type: 'string', default: String(MAX_STEPS - 1) },
  'foreach-parallelism': { type: 'string', default: '0' },
  rate: { type: 'string', default: '2' },
  duration: { type: 'string', default: '30' },
  'step-delay-ms': { type: 'string', default: '1000' },
  'start-delay-ms': { type: 'string', default: '200' },
  failure: { type: 'string', default: '0' },
  retries: { type: 'string', default: '0' },
  retain: { type: 'string', default: '1000' },
  'retain-shape': { type: 'string', default: 'single' },
  'retain-inflight': { type: 'string', default: '100' },
  nodes: { type: 'string', default: '4' },
  'timeout-s': { type: 'string', default: '900' },
  out: { type: 'string' },
  'ferry-env': { type: 'string', default: '' },
  'ferry-build': { type: 'string', default: 'js' },
  'argo-args': { type: 'string', default: '' },
  'argo-env': { type: 'string', default: '' },
  quiet: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false });
  if (values.help) {
    process.stdout.write(`usage: npm run bench -- [--flag=value ...]\n${Object.entries(FLAGS).map(([k, f]) => `  --${k}${'default' in f ? ` (default ${String(f.default)})` : ''}`).join('\n')}\n`);
    process.exit(0);
  }
  const number = (name: keyof typeof FLAGS, min: number, max: number): number => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be a number from ${min} to ${max}, got "${String(values[name])}"`);
    return n;
  };
  const list = (text: string, allowed: string[], name: string, also?: { test: (item: string) => boolean; what: string }) => {
    const items = text.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((i) => !allowed.includes(i) && !also?.test(i));
    if (bad.length) throw new Error(`--${name}: unknown ${bad.join(', ')} (choose from ${[...allowed, ...(also ? [also.what] : [])].join(', ')})`);
    return [...new Set(items)];
  };
  const sized = {
    test: (w: string) => (forEachItems(w) ?? Infinity) <= MAX_FOREACH_ITEMS,
    what: `foreach-<N> (N from 1 to ${MAX_FOREACH_ITEMS})`,
  };
  const retainShape = values['retain-shape'];
  if (retainShape !== 'single' && retainShape !== 'linear') throw new Error('--retain-shape must be single or linear');
  const ferryBuild = values['ferry-build'];
  if (ferryBuild !== 'js' && ferryBuild !== 'ts') throw new Error('--ferry-build must be js or ts');
  return {
    engines: list(values.engines, ['ferry', 'argo'], 'engines'),
    workloads: list(values.workloads, ['linear', 'fanout', 'steady'], 'workloads', sized),
    runs: number('runs', 1, 100_000),
    // A Pipeline holds at most MAX_STEPS steps: the fan-out plus its join.
    fanout: number('fanout', 1, MAX_STEPS - 1),
    forEachParallelism: Math.trunc(number('foreach-parallelism', 0, MAX_FOREACH_ITEMS)),
    rate: number('rate', 0.01, 1000),
    duration: number('duration', 1, 86_400),
    stepDelayMs: number('step-delay-ms', 0, 3_600_000),
    startDelayMs: number('start-delay-ms', 0, 3_600_000),
    failure: number('failure', 0, 1),
    retries: number('retries', 0, 20),
    retain: values.retain === '' || values.retain === '0' ? [] : values.retain.split(',').map((s) => Number(s)).filter((n) => n > 0).sort((a, b) => a - b),
    retainShape,
    retainInflight: number('retain-inflight', 1, 10_000),
    nodes: number('nodes', 1, 100),
    timeoutMs: number('timeout-s', 10, 86_400) * 1000,
    out: values.out,
    quiet: values.quiet,
    ferryEnv: envList(values['ferry-env'], 'ferry-env'),
    ferryBuild,
    argoArgs: values['argo-args'].split(',').filter(Boolean),
    argoEnv: envList(values['argo-env'], 'argo-env'),
  };
}

function envList(text: string, flag: string): Record<string, string> {
  return Object.fromEntries(text.split(',').filter(Boolean).map((kv) => {
    const at = kv.indexOf('=');
    if (at <= 0) throw new Error(`--${flag} takes NAME=value,..., got "${kv}"`);
    return [kv.slice(0, at), kv.slice(at + 1)];
  }));
}

export interface BenchReport {
  date: string;
  machine: { cpus: number; cpuModel: string; loadAverageAtStart: number[] };
  versions: Record<string, string>;
  options: BenchOptions;
  settings: Record<string, Record<string, string>>;
  results: WorkloadResult[];
  retention: RetentionPoint[];
  /** Why the retention curve stopped early, if it did (the workloads' results are kept). */
  retentionError?: string;
}

/** Runs the benchmark; used by the CLI below and by the smoke test. */
export async function runBench(options: BenchOptions, log: (line: string) => void): Promise<BenchReport> {
  const loadAverageAtStart = loadavg();
  const lifecycle = { startDelayMs: options.startDelayMs, stepDelayMs: options.stepDelayMs, failureFraction: options.failure };
  const cluster = await startBenchCluster({ lifecycle, nodes: options.nodes, log });
  const observers: Observer[] = [];
  const disposables: Engine[] = [];
  try {
    const shapes = {
      linear: linear('linear5', 5),
      fanout: fanOut('fanout', options.fanout),
      single: linear('single', 1),
    };
    // Only the sizes asked for.
    const forEachSpecs = options.workloads.flatMap((w) => {
      const spec = forEachWorkload(w, options.timeoutMs, options.forEachParallelism || undefined);
      return spec ? [spec] : [];
    });
    const engines: Array<{ engine: Engine; observer: Observer }> = [];
    for (const name of options.engines) {
      const namespace = `bench-${name}`;
      await cluster.createNamespace(namespace);
      const ctx: EngineContext = {
        client: cluster.client, kubeconfigPath: cluster.server.kubeconfigPath, namespace, workDir: cluster.server.workDir, retries: options.retries,
      };
      // Argo's engine builds Argo's controller (minutes, once) and installs its CRDs: only when asked for.
      const engine = name === 'ferry' ? await ferryEngine(ctx, options.ferryEnv, options.ferryBuild) : await (await import('./lib/argo-engine.ts')).argoEngine(ctx, cluster.server, log, options.argoArgs, options.argoEnv);
      disposables.push(engine);
      for (const shape of [...Object.values(shapes), ...forEachSpecs.map((f) => f.shape)]) await engine.define(shape);
      const observer = new Observer(cluster.client, namespace, engine);
      await observer.start();
      observers.push(observer);
      engines.push({ engine, observer });
    }

    const specs: WorkloadSpec[] = [];
    const timeoutMs = options.timeoutMs;
    if (options.workloads.includes('linear')) {
      specs.push({ kind: 'linear', label: `linear: ${options.runs} runs × 5 steps, all at once`, shape: shapes.linear, runs: options.runs, timeoutMs });
    }
    if (options.workloads.includes('fanout')) {
      specs.push({ kind: 'fanout', label: `fan-out: 1 run, ${options.fanout} parallel steps + join`, shape: shapes.fanout, runs: 1, timeoutMs });
    }
    if (options.workloads.includes('steady')) {
      const runs = Math.max(1, Math.round(options.rate * options.duration));
      specs.push({ kind: 'steady', label: `steady: ${options.rate} runs/s × ${options.duration} s (5 steps each)`, shape: shapes.linear, runs, ratePerSecond: options.rate, timeoutMs });
    }
    specs.push(...forEachSpecs);

    const results: WorkloadResult[] = [];
    for (const [i, spec] of specs.entries()) {
      // Alternate who goes first, so a drift of the machine (other work, a growing etcd) favours neither.
      const order = i % 2 === 0 ? engines : [...engines].reverse();
      for (const { engine, observer } of order) {
        // Thousands of Pods (and Argo's workflow, rewritten with every node in it) fill etcd's
        // 256 MiB quota over a few workloads; compact it first, before anything is measured.
        if (forEachItems(spec.kind) !== undefined) {
          const { beforeMiB, afterMiB } = await cluster.compactEtcd();
          log(`  etcd compacted and defragmented: ${beforeMiB.toFixed(0)} → ${afterMiB.toFixed(0)} MiB`);
        }
        log(`${spec.label}: ${engine.name} ...`);
        const controller = await engine.start();
        try {
          const result = await runWorkload(cluster, engine, controller, observer, spec, `${spec.kind}`, log);
          log(`  ${engine.name}: ${result.succeeded}/${result.runs} runs succeeded, ${result.steps} steps in ${result.wallSeconds.toFixed(1)} s, ${result.stepsPerSecond.toFixed(1)} steps/s`);
          results.push(result);
        } finally {
          await controller.stop();
        }
        // A forEach of thousands leaves its Pods (and Argo its workflow) behind: with the next
        // engine's they would fill etcd's quota mid-run ("database space exceeded"), failing
        // whoever goes second. So they go before the next workload, as in retention.
        if (forEachItems(spec.kind) !== undefined) {
          log(`  deleting ${engine.name}'s runs, Pods and Events ...`);
          await cluster.emptyNamespace(observer.namespace, [engine.runResource, PODS, EVENTS, CORE_EVENTS]);
        }
      }
    }

    const retention: RetentionPoint[] = [];
    const retainShape: Shape = options.retainShape === 'single' ? shapes.single : shapes.linear;
    // Engine by engine (not alternating): thousands of runs of both would not fit etcd's quota,
    // so each engine's objects are deleted before the next one fills.
    let retentionError: string | undefined;
    // A failure late in the curve (it takes the longest) must not lose the workloads' results.
    try {
      for (const [i, { engine, observer }] of (options.retain.length > 0 ? engines : []).entries()) {
        const compact = async () => {
          const { beforeMiB, afterMiB } = await cluster.compactEtcd();
          log(`  etcd compacted and defragmented: ${beforeMiB.toFixed(0)} → ${afterMiB.toFixed(0)} MiB`);
        };
        await compact();
        for (const target of options.retain) {
          log(`retention: ${engine.name} up to ${target} runs kept ...`);
          const current = { controller: await engine.start() };
          try {
            const point = await fillAndMeasure(engine, current, observer, retainShape, target, `keep${target}`, options.retainInflight, options.timeoutMs * 4, log, compact);
            log(`  ${engine.name}: ${point.runsKept} runs, ${point.podsKept} pods kept: RSS ${point.rssMiBFilled.toFixed(0)} MiB, ${point.rssMiBAfterRestart.toFixed(0)} MiB after a restart`);
            retention.push(point);
          } finally {
            await current.controller.stop();
          }
        }
        if (i < engines.length - 1) {
          log(`retention: deleting ${engine.name}'s runs, Pods and Events ...`);
          await cluster.emptyNamespace(observer.namespace, [engine.runResource, PODS, EVENTS, CORE_EVENTS]);
        }
      }
    } catch (err) {
      retentionError = err instanceof Error ? err.message : String(err);
      log(`retention stopped early: ${retentionError}`);
    }

    const cpuInfo = cpus();
    return {
      date: new Date().toISOString(),
      machine: { cpus: cpuInfo.length, cpuModel: cpuInfo[0]?.model ?? 'unknown', loadAverageAtStart },
      versions: Object.fromEntries(engines.map(({ engine }) => [engine.name, engine.version])),
      options,
      settings: Object.fromEntries(engines.map(({ engine }) => [engine.name, engine.settings])),
      results,
      retention,
      ...(retentionError ? { retentionError } : {}),
    };
  } finally {
    for (const o of observers) o.stop();
    for (const engine of disposables) await engine.dispose?.();
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const log = (line: string) => { if (!options.quiet) process.stderr.write(`[bench] ${line}\n`); };
  const report = await runBench(options, log);
  const table = renderTable(report);
  process.stdout.write(`${table}\n`);
  const out = options.out ?? join(import.meta.dirname, 'results', `${report.date.slice(0, 19).replace(/:/g, '')}.json`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify({ ...report, table: table.split('\n') }, null, 2)}\n`);
  process.stderr.write(`[bench] wrote ${out}\n`);
}

if (import.meta.main) {
  // Ctrl-C or a kill: exit through process.exit, whose 'exit' hooks stop every child we started.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
