// The contract between the operator and the step agent: the environment the operator gives the
// agent containers, and the report publish-outputs returns through its termination message.
// Both sides import this file, so they cannot drift apart.
import { createHash } from 'node:crypto';

/** Everything a step sees lives under this directory (an emptyDir shared by the Pod's containers). */
export const FERRY_DIR = '/ferry';
export const INPUTS_DIR = `${FERRY_DIR}/inputs`;
export const OUTPUTS_DIR = `${FERRY_DIR}/outputs`;
export const CONFIG_PATH = `${FERRY_DIR}/config.json`;
/** A step writes each declared result to a file here (not under outputs/, so no output name can collide). */
export const RESULTS_DIR = `${FERRY_DIR}/results`;
export const METRICS_FILE = 'metrics.json';

export const ENV = {
  store: 'FERRY_ARTIFACT_STORE',
  gcsEndpoint: 'FERRY_GCS_ENDPOINT',
  dir: 'FERRY_DIR',
  inputs: 'FERRY_INPUTS',
  outputs: 'FERRY_OUTPUTS',
  configuration: 'FERRY_CONFIGURATION',
  report: 'FERRY_REPORT',
  namespace: 'FERRY_NAMESPACE',
  terminationLog: 'FERRY_TERMINATION_LOG',
  results: 'FERRY_RESULTS',
} as const;

/** The kubelet reads at most 4096 bytes of a termination message. */
export const TERMINATION_MESSAGE_LIMIT = 4096;
export const MAX_METRICS = 64;
/** The largest result a step may write (docs/limits.md): results live in the run's status. */
export const RESULT_MAX_BYTES = 4096;
/** Metric names are Kubernetes-label-sized: they become status keys and lineage columns. */
export const METRIC_NAME_MAX_LENGTH = 63;
/** The largest metrics.json the agent reads (checked before reading). */
export const METRICS_FILE_MAX_BYTES = 1024 * 1024;
/** The largest stored step report the operator reads (checked before reading). */
export const REPORT_MAX_BYTES = 1024 * 1024;
/** The largest stored report of a forEach item: its results (16 × 4 KiB) and outputs fit well within it. */
export const ITEM_REPORT_MAX_BYTES = 128 * 1024;
/** The largest collection (a forEach step's items) or list of item URLs anyone reads. */
export const COLLECTION_MAX_BYTES = 64 * 1024 * 1024;

/**
 * With signed URLs (the default store, served by the artifact server), every object a step
 * reads or writes comes with the one URL that allows it; the Pod holds no store credential.
 * Without (a gs:// store for now), the agent opens the store at FERRY_ARTIFACT_STORE itself.
 */
export interface InputSpec {
  name: string;
  uri: string;
  digest: string;
  /** A signed GET of `uri`, and headers it must be sent with. */
  url?: string;
  headers?: Record<string, string>;
  /**
   * Set when `uri` is a collection (a forEach step's outputs): a JSON list of
   * CollectedInput, each fetched into <name>/<index>/.
   */
  collection?: boolean;
  /** In a plan, before the list is made: which output of each item the collection input is. */
  output?: string;
  /** In a plan: what the step cache keys a collection input by (its items' digests, the same in every run). */
  contentDigest?: string;
}

/** One item's artifact of a collection input, with the URL to read it by. */
export interface CollectedInput {
  index: number;
  uri: string;
  digest: string;
  url?: string;
  headers?: Record<string, string>;
}

export interface OutputSpec {
  name: string;
  type: string;
  /** Where the output goes, and a signed create-once PUT of it (with the headers it was signed with). */
  uri?: string;
  url?: string;
  headers?: Record<string, string>;
  /** The PUT must carry Content-Length (S3): the agent writes the tar to /ferry first. */
  lengthRequired?: boolean;
}

/** The configuration the step receives at /ferry/config.json. */
export interface ConfigurationSpec {
  uri: string;
  digest: string;
  url?: string;
  headers?: Record<string, string>;
}

/** Where a report too large for a termination message goes (with signed URLs). */
export interface ReportSpec {
  uri: string;
  url: string;
  headers?: Record<string, string>;
  lengthRequired?: boolean;
}

export interface PublishedOutput {
  name: string;
  uri: string;
  digest: string;
  size: number;
}

export interface StepReport {
  outputs: PublishedOutput[];
  metrics?: Record<string, number>;
  /** The text of each result file the step wrote (the operator checks them against their declared types). */
  results?: Record<string, string>;
}

/** What the termination message holds: the report, or where it was stored when too large. */
export type TerminationMessage = { v: 1; report: StepReport } | { v: 1; manifest: { uri: string; digest: string } };

export function parseTerminationMessage(text: string | undefined): TerminationMessage | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<{ v: number; report: StepReport; manifest: { uri: string; digest: string } }>;
    if (value.v !== 1) return undefined;
    if (value.report && Array.isArray(value.report.outputs)) return { v: 1, report: value.report };
    if (value.manifest && typeof value.manifest.uri === 'string') return { v: 1, manifest: value.manifest };
  } catch {
    // Not ours: a step's own termination message, say.
  }
  return undefined;
}

/** A stored report, checked against the digest its termination message gave, and its shape. */
export function parseStepReport(bytes: Buffer, digest: string): StepReport {
  const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (actual !== digest) throw new SyntaxError(`the stored report does not have the digest ${digest}`);
  const value = JSON.parse(bytes.toString('utf8')) as Partial<StepReport>;
  const outputs = value.outputs;
  if (!Array.isArray(outputs) || !outputs.every((o) => typeof o?.name === 'string' && typeof o.uri === 'string' && typeof o.digest === 'string')) {
    throw new SyntaxError('the stored report has no list of outputs with name, uri and digest');
  }
  return {
    outputs,
    ...(value.metrics ? { metrics: numericMetrics(value.metrics) } : {}),
    ...(value.results ? { results: stringValues(value.results) } : {}),
  };
}

/** The string members of a results object (anything else is dropped: the operator then reports the result missing). */
export function stringValues(document: unknown): Record<string, string> {
  if (!document || typeof document !== 'object' || Array.isArray(document)) return {};
  return Object.fromEntries(Object.entries(document as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/**
 * Keeps numeric top-level values of a metrics.json document whose names are at most
 * METRIC_NAME_MAX_LENGTH characters, at most MAX_METRICS of them (the first by name).
 */
export function numericMetrics(document: unknown): Record<string, number> {
  if (!document || typeof document !== 'object' || Array.isArray(document)) return {};
  const entries = Object.entries(document as Record<string, unknown>)
    .filter((e): e is [string, number] => e[0].length <= METRIC_NAME_MAX_LENGTH && typeof e[1] === 'number' && Number.isFinite(e[1]))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .slice(0, MAX_METRICS);
  return Object.fromEntries(entries);
}
