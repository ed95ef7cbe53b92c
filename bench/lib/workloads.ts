// Runs one workload against one controller and measures it: submit the runs (all at once, or
// at a steady rate), wait until every run has ended, and take the figures from the bench's own
// watch, the API server's request counters, the controller's client metrics and /proc.
import type { BenchCluster } from './cluster.ts';
import { forEachShape, type Controller, type Engine, type Shape } from './engine.ts';
import {
  controllerRequests, distribution, handoffs, perStep, runDurations, saturatedRate, WRITE_VERBS,
  type Distribution, type Handoffs,
} from './figures.ts';
import type { Observer } from './observer.ts';
import { diffMetrics } from './prom.ts';
import { resetPeak, sampleProcess } from './proc.ts';

export interface WorkloadSpec {
  /** linear, fanout, steady, foreach-<N> */
  kind: string;
  /** What the table calls it, e.g. "linear 60 runs × 5 steps". */
  label: string;
  shape: Shape;
  runs: number;
  /** Runs submitted per second; all at once when undefined. */
  ratePerSecond?: number;
  timeoutMs: number;
}

/** `foreach-<N>`: one run whose one step fans out over N items (Ferry forEach, Argo withItems). */
const FOREACH_WORKLOAD = /^foreach-([1-9]\d*)$/;

/** The item count of a `foreach-<N>` workload, undefined for the others. */
export function forEachItems(workload: string): number | undefined {
  const match = FOREACH_WORKLOAD.exec(workload);
  return match ? Number(match[1]) : undefined;
}

/**
 * The `foreach-<N>` workload: 1 run of a Pipeline (WorkflowTemplate) whose single step fans out
 * over the items 0…N−1, one Pod per item, with no parallelism limit on either side unless
 * `parallelism` (the same on both); every item Pod does what a step Pod of the other workloads
 * does (the same KWOK lifecycle).
 */
export function forEachWorkload(kind: string, timeoutMs: number, parallelism?: number): WorkloadSpec | undefined {
  const items = forEachItems(kind);
  if (items === undefined) return undefined;
  const limit = parallelism ? `at most ${parallelism.toLocaleString('en')} at once` : 'all at once';
  return {
    kind,
    label: `forEach: 1 run, 1 step × ${items.toLocaleString('en')} items (Argo withItems), ${limit}`,
    shape: forEachShape(kind, items, parallelism),
    runs: 1,
    timeoutMs,
  };
}

export interface WorkloadResult {
  engine: string;
  workload: string;
  label: string;
  runs: number;
  succeeded: number;
  failed: number;
  /** Runs that had not ended when the workload's timeout (--timeout-s) stopped it; its figures are then over what it did. */
  unfinished: number;
  /** The controller exited during the workload (its CPU and memory are from its last sample, within 2 s of the end). */
  controllerExited?: boolean;
  /** Step Pods that ended (Succeeded or Failed), retries included. */
  steps: number;
  wallSeconds: number;
  stepsPerSecond: number;
  overallStepsPerSecond: number;
  handoff: Handoffs;
  runDurationMs: Distribution;
  /** Step Pod seen created → seen ended (bench watch clock): the simulated lifecycle plus binding and KWOK's queue. */
  podLifetimeMs: Distribution;
  api: {
    total: number;
    writes: number;
    perStep: Record<string, number>;
    totalPerStep: number;
    writesPerStep: number;
    byResource: Record<string, number>;
  };
  /** The same, counted by the controller's own client (undefined if it exposes none). */
  clientRequestsPerStep?: Record<string, number>;
  /** The controller's own figures over the workload (Ferry: reconciles, their mean time, errors, 409s). */
  controller?: Record<string, number>;
  cpuSeconds: number;
  cpuSecondsPer1000Steps: number;
  /** kube-apiserver + etcd CPU over the workload: the load the controller put on the control plane (KWOK's and the scheduler's share included, alike for both). */
  controlPlaneCpuSecondsPer1000Steps: number;
  peakRssMiB: number;
  rssMiBAfter: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `task` over `items` with at most `limit` in flight. */
export async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await task(items[next++]!);
  }));
}

export async function runWorkload(
  cluster: BenchCluster, engine: Engine, controller: Controller, observer: Observer, spec: WorkloadSpec, prefix: string,
  log: (line: string) => void,
): Promise<WorkloadResult> {
  const names = Array.from({ length: spec.runs }, (_, i) => `${prefix}-${i}`);
  const nameSet = new Set(names);
  await resetPeak(controller.pid);
  const apiBefore = await cluster.apiRequests();
  const clientBefore = await controller.metrics();
  const procBefore = await sampleProcess(controller.pid);
  const planeBefore = await controlPlaneCpu(cluster);
  const started = Date.now();

  const submit = (name: string) => engine.submit(spec.shape, name);
  if (spec.ratePerSecond === undefined) {
    await pool(names, 16, submit);
  } else {
    const interval = 1000 / spec.ratePerSecond;
    const pending: Array<Promise<void>> = [];
    for (const [i, name] of names.entries()) {
      const wait = started + i * interval - Date.now();
      if (wait > 0) await sleep(wait);
      pending.push(submit(name));
    }
    await Promise.all(pending);
  }
  const endedSteps = () => { let n = 0; for (const p of observer.pods.values()) if (p.endedMs !== undefined && nameSet.has(p.run)) n++; return n; };
  const progress = setInterval(() => log(`  ${engine.name} ${spec.kind}: ${observer.finished(names)}/${names.length} runs ended, ${endedSteps()} step Pods ended`), 15_000);
  // The controller's last /proc sample, and whether it has exited (a crash, or a lost Lease).
  let lastSample = procBefore;
  let controllerExited = false;
  const watchProcess = setInterval(() => void sampleProcess(controller.pid).then(
    (sample) => { lastSample = sample; },
    () => { controllerExited = true; observer.recheck(); },
  ), 2_000);
  try {
    // NOTE: a controller that has not finished by the timeout, or that exited, is measured as it
    // stands (the result says how many runs were unfinished), so that one engine's trouble does
    // not lose the figures of the whole invocation.
    await observer.until(`${spec.label} under ${engine.name}`, () => controllerExited || observer.finished(names) === names.length, spec.timeoutMs)
      .catch((err: unknown) => log(`  ${engine.name} ${spec.kind}: ${err instanceof Error ? err.message : String(err)}; measured as it stands`));
    if (controllerExited) log(`  ${engine.name} ${spec.kind}: the controller exited; measured as it stands`);
  } finally {
    clearInterval(progress);
    clearInterval(watchProcess);
  }
  const ended = Date.now();
  await sleep(1_000); // the last events and writes after the final status
  const procAfter = await sampleProcess(controller.pid).catch(() => {
    controllerExited = true;
    return lastSample;
  });
  const planeAfter = await controlPlaneCpu(cluster);
  const apiAfter = await cluster.apiRequests();
  const clientAfter = await controller.metrics();

  const pods = [...observer.pods.values()].filter((p) => nameSet.has(p.run));
  const endedPods = pods.filter((p) => p.endedMs !== undefined);
  const runs = names.map((n) => observer.runs.get(n)!).filter(Boolean);
  const steps = endedPods.length;
  const requests = controllerRequests(diffMetrics(apiBefore, apiAfter));
  const total = Object.values(requests.byVerb).reduce((a, b) => a + b, 0);
  const writes = WRITE_VERBS.reduce((sum, v) => sum + (requests.byVerb[v] ?? 0), 0);
  const clientDelta = clientBefore && clientAfter ? diffMetrics(clientBefore, clientAfter) : undefined;
  const client = clientDelta ? engine.clientRequests(clientDelta) : undefined;
  const own = clientDelta ? engine.ownFigures(clientDelta) : undefined;
  const cpuSeconds = procAfter.cpuSeconds - procBefore.cpuSeconds;
  return {
    engine: engine.name,
    workload: spec.kind,
    label: spec.label,
    runs: names.length,
    succeeded: runs.filter((r) => r.outcome === 'Succeeded').length,
    failed: runs.filter((r) => r.outcome === 'Failed').length,
    unfinished: names.length - observer.finished(names),
    ...(controllerExited ? { controllerExited } : {}),
    steps,
    wallSeconds: (ended - started) / 1000,
    stepsPerSecond: saturatedRate(endedPods.map((p) => p.endedMs!), started),
    overallStepsPerSecond: steps / Math.max(0.001, (ended - started) / 1000),
    handoff: handoffs((run) => (nameSet.has(run) ? spec.shape : undefined), pods),
    runDurationMs: runDurations(runs),
    podLifetimeMs: distribution(endedPods.map((p) => p.endedMs! - p.seenMs)),
    api: {
      total,
      writes,
      perStep: perStep(requests.byVerb, steps),
      totalPerStep: steps > 0 ? total / steps : NaN,
      writesPerStep: steps > 0 ? writes / steps : NaN,
      byResource: requests.byResource,
    },
    ...(client ? { clientRequestsPerStep: perStep(client, steps) } : {}),
    ...(own && Object.keys(own).length > 0 ? { controller: own } : {}),
    cpuSeconds,
    cpuSecondsPer1000Steps: steps > 0 ? (cpuSeconds / steps) * 1000 : NaN,
    controlPlaneCpuSecondsPer1000Steps: steps > 0 ? ((planeAfter - planeBefore) / steps) * 1000 : NaN,
    peakRssMiB: procAfter.peakRssMiB,
    rssMiBAfter: procAfter.rssMiB,
  };
}

async function controlPlaneCpu(cluster: BenchCluster): Promise<number> {
  const samples = await Promise.all(cluster.controlPlanePids.map((pid) => sampleProcess(pid).catch(() => ({ cpuSeconds: 0 }))));
  return samples.reduce((sum, s) => sum + s.cpuSeconds, 0);
}

export interface RetentionPoint {
  engine: string;
  /** Runs that exist in the controller's namespace (all finished), earlier workloads' included. */
  runsKept: number;
  podsKept: number;
  /** Peak RSS while the runs were being added (since the previous point). */
  peakRssMiBWhileFilling: number;
  rssMiBFilled: number;
  /** A fresh controller after it listed everything and went quiet: what keeping N runs costs. */
  rssMiBAfterRestart: number;
  peakRssMiBRestart: number;
  restartSeconds: number;
  fillSeconds: number;
}

/**
 * Adds finished runs until the namespace holds `target`, at most `inflight` unfinished at a time,
 * then measures the controller's memory, restarts it and measures again once it is quiet.
 */
export async function fillAndMeasure(
  engine: Engine, current: { controller: Controller }, observer: Observer, shape: Shape, target: number,
  prefix: string, inflight: number, timeoutMs: number, log: (line: string) => void,
  /** Called after every 1000 runs submitted (etcd upkeep). */
  maintenance: () => Promise<void> = async () => {},
): Promise<RetentionPoint> {
  const started = Date.now();
  const mine: string[] = [];
  let index = 0;
  let nextMaintenance = 1000;
  const unfinished = () => mine.length - observer.finished(mine);
  const deadline = started + timeoutMs;
  let lastLog = started;
  while (observer.runs.size < target) {
    if (Date.now() > deadline) throw new Error(`filling ${engine.name} to ${target} runs timed out at ${observer.runs.size}`);
    const room = Math.min(inflight - unfinished(), target - observer.runs.size);
    if (room <= 0) {
      await sleep(100);
      continue;
    }
    if (index >= nextMaintenance) {
      nextMaintenance += 1000;
      await maintenance();
    }
    const batch = Array.from({ length: room }, () => `${prefix}-${index++}`);
    mine.push(...batch);
    await pool(batch, 16, (name) => engine.submit(shape, name));
    // The watch must have seen them before observer.runs.size counts them.
    await observer.until('submitted runs to be seen', () => batch.every((n) => observer.runs.has(n)), 60_000);
    if (Date.now() - lastLog > 15_000) {
      lastLog = Date.now();
      log(`  ${engine.name} retention: ${observer.runs.size}/${target} runs`);
    }
  }
  await observer.until(`${engine.name} retention runs to end`, () => unfinished() === 0, timeoutMs);
  const fillSeconds = (Date.now() - started) / 1000;
  await sleep(2_000);
  const filled = await sampleProcess(current.controller.pid);

  const restartStarted = Date.now();
  await current.controller.stop();
  current.controller = await engine.start();
  await quiet(current.controller.pid);
  const restartSeconds = (Date.now() - restartStarted) / 1000;
  const restarted = await sampleProcess(current.controller.pid);
  await resetPeak(current.controller.pid);
  return {
    engine: engine.name,
    runsKept: observer.runs.size,
    podsKept: observer.pods.size,
    peakRssMiBWhileFilling: filled.peakRssMiB,
    rssMiBFilled: filled.rssMiB,
    rssMiBAfterRestart: restarted.rssMiB,
    peakRssMiBRestart: restarted.peakRssMiB,
    restartSeconds,
    fillSeconds,
  };
}

/** Waits until a process has used under 2 % of a core for 3 s (its start-up work is done). */
export async function quiet(pid: number, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = await sampleProcess(pid);
  for (;;) {
    await sleep(3_000);
    const now = await sampleProcess(pid);
    if (now.cpuSeconds - last.cpuSeconds < 0.06 || Date.now() > deadline) return;
    last = now;
  }
}

