// The contract between the operator and the step agent: the environment the operator gives the
// agent containers, and the report publish-outputs returns through its termination message.
// Both sides import this file, so they cannot drift apart.

/** Everything a step sees lives under this directory (an emptyDir shared by the Pod's containers). */
export const FERRY_DIR = '/ferry';
export const INPUTS_DIR = `${FERRY_DIR}/inputs`;
export const OUTPUTS_DIR = `${FERRY_DIR}/outputs`;
export const CONFIG_PATH = `${FERRY_DIR}/config.json`;
export const METRICS_FILE = 'metrics.json';

export const ENV = {
  store: 'FERRY_ARTIFACT_STORE',
  gcsEndpoint: 'FERRY_GCS_ENDPOINT',
  dir: 'FERRY_DIR',
  inputs: 'FERRY_INPUTS',
  outputs: 'FERRY_OUTPUTS',
  configuration: 'FERRY_CONFIGURATION',
  terminationLog: 'FERRY_TERMINATION_LOG',
} as const;

/** The kubelet reads at most 4096 bytes of a termination message. */
export const TERMINATION_MESSAGE_LIMIT = 4096;
export const MAX_METRICS = 64;

export interface InputSpec {
  name: string;
  uri: string;
  digest: string;
}

export interface OutputSpec {
  name: string;
  type: string;
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

/** Keeps numeric top-level values of a metrics.json document, at most MAX_METRICS of them. */
export function numericMetrics(document: unknown): Record<string, number> {
  if (!document || typeof document !== 'object' || Array.isArray(document)) return {};
  const entries = Object.entries(document as Record<string, unknown>)
    .filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1]))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .slice(0, MAX_METRICS);
  return Object.fromEntries(entries);
}
