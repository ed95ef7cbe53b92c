// What one step attempt may touch in the artifact store, and how: its inputs and configuration
// to read, its outputs and oversized report to create once, each under the run's namespace.
// With a store that grants signed URLs, each object comes with the one URL that allows it, so
// the step Pod holds no store credential and can reach no other object.
import type { ConfigurationSpec, InputSpec, OutputSpec, ReportSpec } from '../../agent/protocol.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';

export interface StepAccess {
  inputs: InputSpec[];
  outputs: OutputSpec[];
  configuration: ConfigurationSpec;
  report?: ReportSpec;
}

/** How long URLs live beyond the step's timeout: the Pod may wait for a node, images may pull. */
export const GRANT_SLACK_SECONDS = 3600;
/** The lifetime of URLs of a step without a timeout. */
export const DEFAULT_GRANT_SECONDS = 24 * 3600;

export interface StepAccessInput {
  store: ArtifactStore;
  /** The timeout of a step that sets none (URLs must outlive it). */
  defaultTimeoutSeconds?: number;
  namespace: string;
  runUid: string;
  step: StepSpec;
  attempt: number;
  inputs: InputSpec[];
  configuration: { uri: string; digest: string };
  now: Date;
}

/** Keys of one attempt's objects: `<namespace>/runs/<run uid>/<step>/<attempt>/…`. */
export const attemptKey = (namespace: string, runUid: string, step: string, attempt: number, file: string) =>
  `${namespace}/runs/${runUid}/${step}/${attempt}/${file}`;

export async function stepAccess({ store, namespace, runUid, step, attempt, inputs, configuration, now, defaultTimeoutSeconds }: StepAccessInput): Promise<StepAccess> {
  const declared = (step.outputs ?? []).map(({ name, type }) => ({ name, type }));
  const grants = store.grants;
  if (!grants) return { inputs, outputs: declared, configuration };
  const expiresAt = new Date(now.getTime() + ((step.timeoutSeconds ?? defaultTimeoutSeconds ?? DEFAULT_GRANT_SECONDS) + GRANT_SLACK_SECONDS) * 1000);
  const create = async (file: string) => {
    const key = attemptKey(namespace, runUid, step.name, attempt, file);
    const grant = await grants.createGrant(key, expiresAt);
    return { uri: store.uriFor(key), url: grant.url, ...(grant.headers ? { headers: grant.headers } : {}), ...(grant.lengthRequired ? { lengthRequired: true } : {}) };
  };
  const read = async (uri: string) => {
    const grant = await grants.readGrant(uri, expiresAt);
    return { url: grant.url, ...(grant.headers ? { headers: grant.headers } : {}) };
  };
  return {
    inputs: await Promise.all(inputs.map(async (input) => ({ ...input, ...(await read(input.uri)) }))),
    outputs: await Promise.all(declared.map(async (output) => ({ ...output, ...(await create(`${output.name}.tar`)) }))),
    configuration: { ...configuration, ...(await read(configuration.uri)) },
    report: await create('report.json'),
  };
}
