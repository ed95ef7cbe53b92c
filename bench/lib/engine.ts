// What the benchmark needs from a workflow controller (Ferry, Argo Workflows): run it as a
// process, define the DAG shapes, submit runs, and say which Pod is which step of which run.
// The shapes are engine-neutral, so both controllers get the same work.
import type { KubeClient } from '../../operator/kube/client.ts';
import type { ObserverAdapter } from './observer.ts';
import type { Sample } from './prom.ts';

export interface StepShape {
  name: string;
  dependsOn: string[];
  /**
   * A fan-out over the items 0…items−1: one Pod per item (Ferry `forEach.items`, Argo
   * `withItems`), each given its item as an argument.
   */
  items?: number;
  /** Most items running at once (Ferry `forEach.maxParallelism`, Argo the DAG template's `parallelism`); unlimited when unset. */
  parallelism?: number;
}

export interface Shape {
  /** DNS label; the Pipeline / WorkflowTemplate name. */
  name: string;
  steps: StepShape[];
}

/** s1 → s2 → … → sN */
export function linear(name: string, length: number): Shape {
  return { name, steps: Array.from({ length }, (_, i) => ({ name: `s${i + 1}`, dependsOn: i === 0 ? [] : [`s${i}`] })) };
}

/** `width` independent steps, then one step that depends on all of them. */
export function fanOut(name: string, width: number): Shape {
  const fans = Array.from({ length: width }, (_, i) => ({ name: `f${String(i).padStart(3, '0')}`, dependsOn: [] }));
  return { name, steps: [...fans, { name: 'join', dependsOn: fans.map((f) => f.name) }] };
}

/** One step over `items` items: `forEach` in Ferry, `withItems` in Argo; at most `parallelism` at once if set. */
export function forEachShape(name: string, items: number, parallelism?: number): Shape {
  return { name, steps: [{ name: 'each', dependsOn: [], items, ...(parallelism ? { parallelism } : {}) }] };
}

/** 0…n−1, the items of a fan-out. */
export const itemList = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

export interface Controller {
  pid: number;
  /** Scrapes the controller's own /metrics (undefined if it has none reachable). */
  metrics(): Promise<Sample[] | undefined>;
  stop(): Promise<void>;
}

export interface EngineContext {
  client: KubeClient;
  kubeconfigPath: string;
  namespace: string;
  workDir: string;
  /** Attempts after the first for every step (simulated failures are retried this often). */
  retries: number;
}

export interface Engine extends ObserverAdapter {
  name: string;
  version: string;
  /** Starts the controller and resolves once it is leading and its caches are synced. */
  start(): Promise<Controller>;
  define(shape: Shape): Promise<void>;
  submit(shape: Shape, runName: string): Promise<void>;
  /** API requests by verb from the controller's own client metrics (a cross-check of the API server's count). */
  clientRequests(samples: Sample[]): Record<string, number>;
  /** Figures only this controller's own metrics can give (deltas over a workload), e.g. reconciles per run. */
  ownFigures(samples: Sample[]): Record<string, number>;
  /** Settings that differ from the controller's defaults, and why; printed with the results. */
  settings: Record<string, string>;
  /** Removes what the engine made for itself (a compiled operator). */
  dispose?(): Promise<void>;
}
