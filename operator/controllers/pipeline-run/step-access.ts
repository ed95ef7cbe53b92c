// What one step attempt may touch in the artifact store, and how: its inputs and configuration
// to read, its outputs and oversized report to create once, each under the run's namespace.
// With a store that grants signed URLs, each object comes with the one URL that allows it, so
// the step Pod holds no store credential and can reach no other object.
import type { CollectedInput, ConfigurationSpec, InputSpec, OutputSpec, ReportSpec } from '../../agent/protocol.ts';
import type { StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { ObjectExistsError, type ArtifactStore } from '../../artifacts/store.ts';
import { uriInNamespace } from '../../artifacts/tenancy.ts';
import { canonicalJson, sha256Hex } from '../../configuration/canonical-json.ts';
import { COLLECTION_MAX_BYTES, parseCollection } from './collection.ts';

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
  /** The item of a forEach step: its objects are the item's own. */
  item?: number;
  inputs: InputSpec[];
  configuration: { uri: string; digest: string };
  now: Date;
}

/** Keys of one attempt's objects: `<namespace>/runs/<run uid>/<step>/<attempt>/…` (`<step>/items/<index>/<attempt>` for an item). */
export const attemptKey = (namespace: string, runUid: string, step: string, attempt: number, file: string, item?: number) =>
  `${namespace}/runs/${runUid}/${step}/${item === undefined ? '' : `items/${item}/`}${attempt}/${file}`;

export async function stepAccess(input: StepAccessInput): Promise<StepAccess> {
  const { store, namespace, runUid, step, attempt, configuration, now, defaultTimeoutSeconds, item } = input;
  const declared = (step.outputs ?? []).map(({ name, type }) => ({ name, type }));
  const grants = store.grants;
  const expiresAt = new Date(now.getTime() + ((step.timeoutSeconds ?? defaultTimeoutSeconds ?? DEFAULT_GRANT_SECONDS) + GRANT_SLACK_SECONDS) * 1000);
  const inputs = await Promise.all(input.inputs.map((i) => (i.collection ? collectionInput(input, i, expiresAt) : i)));
  if (!grants) return { inputs, outputs: declared, configuration };
  const create = async (file: string) => {
    const key = attemptKey(namespace, runUid, step.name, attempt, file, item);
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

/**
 * A collection input (every item's output of a forEach step): a list of the items' objects,
 * each with its own signed URL, written once for this attempt in the store (a Pod spec could not
 * hold 10,000 URLs), and the input becomes that list. The step reads it and each item into
 * /ferry/inputs/<name>/<index>/.
 */
async function collectionInput(access: StepAccessInput, input: InputSpec, expiresAt: Date): Promise<InputSpec> {
  const { store, namespace, runUid, step, attempt, item } = access;
  const uri = uriInNamespace(store, input.uri, namespace, `input "${input.name}"`);
  const collection = parseCollection(await store.readAll(uri, COLLECTION_MAX_BYTES), input.digest);
  const grants = store.grants;
  const entries: CollectedInput[] = await Promise.all(collection.items.flatMap((collected) => {
    const output = collected.outputs.find((o) => o.name === input.output);
    if (!output) return [];
    return [(async () => {
      const grant = grants ? await grants.readGrant(output.uri, expiresAt) : undefined;
      return { index: collected.index, uri: output.uri, digest: output.digest, ...(grant ? { url: grant.url, ...(grant.headers ? { headers: grant.headers } : {}) } : {}) };
    })()];
  }));
  const key = attemptKey(namespace, runUid, step.name, attempt, `input-${input.name}.json`, item);
  let bytes: Buffer = Buffer.from(canonicalJson(entries));
  try {
    await store.createOnce(key, bytes);
  } catch (err) {
    if (!(err instanceof ObjectExistsError)) throw err;
    // An earlier pass wrote it (its reply lost): that list is the one the Pod reads.
    bytes = await store.readAll(store.uriFor(key), COLLECTION_MAX_BYTES);
  }
  return { name: input.name, uri: store.uriFor(key), digest: `sha256:${sha256Hex(bytes)}`, collection: true };
}
