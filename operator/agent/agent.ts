// The step agent: the operator's own program run inside step Pods, before and after the user's
// container. fetch-inputs downloads each input into /ferry/inputs/<name>, verifying its sha256,
// and writes the frozen configuration to /ferry/config.json; publish-outputs uploads each
// declared output as a tar and reports URIs and digests through the termination message. It
// needs no Kubernetes API access, and with signed URLs (object-access.ts) no store credential.
import { createHash } from 'node:crypto';
import { lstat, mkdir, open, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openArtifactStore } from '../artifacts/open.ts';
import { ObjectTooLargeError, collectAtMost, type ArtifactStore } from '../artifacts/store.ts';
import type { Logger } from '../observability/logger.ts';
import { fetchObject, uploadObject, type UploadOptions } from './object-access.ts';
import {
  COLLECTION_MAX_BYTES, ENV, FERRY_DIR, METRICS_FILE, METRICS_FILE_MAX_BYTES, RESULT_MAX_BYTES, TERMINATION_MESSAGE_LIMIT, numericMetrics,
  type CollectedInput, type ConfigurationSpec, type InputSpec, type OutputSpec, type PublishedOutput, type ReportSpec, type StepReport, type TerminationMessage,
} from './protocol.ts';
import { extractArtifact, packArtifact } from './tar.ts';


export class AgentError extends Error {}

interface AgentContext {
  env: NodeJS.ProcessEnv;
  log: Logger;
}

const dirOf = (env: NodeJS.ProcessEnv) => env[ENV.dir] || FERRY_DIR;

function openStore(env: NodeJS.ProcessEnv): ArtifactStore {
  const root = env[ENV.store];
  if (!root) throw new AgentError(`${ENV.store} is not set`);
  const endpoint = env[ENV.gcsEndpoint];
  return openArtifactStore(root, endpoint ? { gcsApiEndpoint: endpoint } : {});
}

function parseJson<T>(env: NodeJS.ProcessEnv, name: string): T | undefined {
  const text = env[name];
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new AgentError(`${name} is not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseList<T>(env: NodeJS.ProcessEnv, name: string): T[] {
  const text = env[name];
  if (!text) return [];
  try {
    const value = JSON.parse(text) as unknown;
    if (!Array.isArray(value)) throw new Error('not a list');
    return value as T[];
  } catch (err) {
    throw new AgentError(`${name} is not a JSON list: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Passes bytes through while hashing them. */
function hashing(): Transform & { digest(): string } {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return Object.assign(stream, { digest: () => `sha256:${hash.digest('hex')}` });
}

export async function fetchInputs({ env, log }: AgentContext): Promise<void> {
  const dir = dirOf(env);
  const inputs = parseList<InputSpec>(env, ENV.inputs);
  const configuration = parseJson<ConfigurationSpec>(env, ENV.configuration);
  await mkdir(join(dir, 'inputs'), { recursive: true });
  await mkdir(join(dir, 'outputs'), { recursive: true });
  await mkdir(join(dir, 'results'), { recursive: true });
  // Only a step without signed URLs opens the store itself.
  const direct = [configuration, ...inputs].some((o) => o && !o.url) ? openStore(env) : undefined;
  const source = async (o: { uri: string; url?: string; headers?: Record<string, string> }) => (o.url ? fetchObject(o.url, o.uri, o.headers) : direct!.read(o.uri));

  if (configuration) {
    const hasher = hashing();
    const chunks: Buffer[] = [];
    await pipeline(await source(configuration), hasher, async function* (data: AsyncIterable<Buffer>) {
      for await (const chunk of data) chunks.push(chunk);
    });
    if (hasher.digest() !== configuration.digest) {
      throw new AgentError(`configuration ${configuration.uri} does not have the expected digest ${configuration.digest}`);
    }
    await writeFile(join(dir, 'config.json'), Buffer.concat(chunks));
  }

  const fetchOne = async (name: string, input: { uri: string; digest: string; url?: string; headers?: Record<string, string> }, target: string) => {
    const hasher = hashing();
    await Promise.all([pipeline(await source(input), hasher), extractArtifact(hasher, target)]);
    const digest = hasher.digest();
    if (digest !== input.digest) {
      await rm(target, { recursive: true, force: true });
      throw new AgentError(`input "${name}" from ${input.uri} does not have the expected digest ${input.digest}`);
    }
    return digest;
  };
  for (const input of inputs) {
    const target = join(dir, 'inputs', input.name);
    if (input.collection) {
      const items = await collectionOf(await source(input), input);
      await mkdir(target, { recursive: true });
      // One item at a time: memory stays bounded however many items the fan-out had.
      for (const item of items) await fetchOne(`${input.name}[${item.index}]`, item, join(target, String(item.index)));
      log.info('fetched input', { input: input.name, uri: input.uri, items: items.length });
      continue;
    }
    const digest = await fetchOne(input.name, input, target);
    log.info('fetched input', { input: input.name, uri: input.uri, digest });
  }
}

/** The list of a collection input (a forEach step's outputs), checked against its digest and shape. */
async function collectionOf(stream: Readable, input: InputSpec): Promise<CollectedInput[]> {
  const bytes = await collectAtMost(stream, COLLECTION_MAX_BYTES, input.uri, () => stream.destroy()).catch((err: unknown) => {
    throw err instanceof ObjectTooLargeError ? new AgentError(`input "${input.name}": its list of items is larger than ${COLLECTION_MAX_BYTES} bytes`) : err;
  });
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== input.digest) {
    throw new AgentError(`input "${input.name}" from ${input.uri} does not have the expected digest ${input.digest}`);
  }
  const items = JSON.parse(bytes.toString('utf8')) as unknown;
  if (!Array.isArray(items) || !items.every((i: Partial<CollectedInput>) => Number.isInteger(i?.index) && typeof i.uri === 'string' && typeof i.digest === 'string')) {
    throw new AgentError(`input "${input.name}": its list of items is not a list of {index, uri, digest}`);
  }
  return items as CollectedInput[];
}

export async function publishOutputs({ env, log }: AgentContext): Promise<TerminationMessage> {
  const dir = dirOf(env);
  const outputs = parseList<OutputSpec>(env, ENV.outputs);
  const reportSpec = parseJson<ReportSpec>(env, ENV.report);
  const direct = outputs.some((o) => !o.url) || !reportSpec ? openStore(env) : undefined;
  const namespace = env[ENV.namespace] ?? '';
  const outputsDir = await checkedOutputsDir(dir);
  const published: PublishedOutput[] = [];
  for (const output of outputs) {
    const path = await checkedOutputPath(outputsDir, output.name);
    const stored = output.url && output.uri
      ? await uploadObject(output.url, output.uri, packArtifact(path), uploadOptions(dir, output))
      : await direct!.putBlob(namespace, packArtifact(path));
    published.push({ name: output.name, uri: stored.uri, digest: stored.digest, size: stored.size });
    log.info('published output', { output: output.name, uri: stored.uri, digest: stored.digest, bytes: stored.size });
  }
  const report: StepReport = { outputs: published };
  const metrics = await readMetrics(join(outputsDir, METRICS_FILE));
  if (metrics) report.metrics = metrics;
  const results = await readResults(join(dir, 'results'), parseList<string>(env, ENV.results));
  if (Object.keys(results).length > 0) report.results = results;
  const message: TerminationMessage = { v: 1, report };
  if (JSON.stringify(message).length <= TERMINATION_MESSAGE_LIMIT) return message;
  // Too large for the kubelet's 4 KiB: store the report and point at it.
  const bytes = Readable.from([Buffer.from(JSON.stringify(report))]);
  const manifest = reportSpec ? await uploadObject(reportSpec.url, reportSpec.uri, bytes, uploadOptions(dir, reportSpec)) : await direct!.putBlob(namespace, bytes);
  return { v: 1, manifest: { uri: manifest.uri, digest: manifest.digest } };
}

/** How to send one object: with the headers it was signed with, spooled under /ferry when the store needs a length. */
function uploadOptions(dir: string, grant: { headers?: Record<string, string>; lengthRequired?: boolean }): UploadOptions {
  return { ...(grant.headers ? { headers: grant.headers } : {}), ...(grant.lengthRequired ? { spoolDir: dir } : {}) };
}

/**
 * /ferry/outputs itself, refused when the user's container replaced it with a symlink (which
 * could point the agent at files of its own image or at another volume).
 */
async function checkedOutputsDir(dir: string): Promise<string> {
  const outputsDir = join(dir, 'outputs');
  const stats = await lstat(outputsDir).catch(() => undefined);
  if (!stats?.isDirectory()) throw new AgentError(`${join(FERRY_DIR, 'outputs')} is not a directory (a symlink is refused)`);
  return outputsDir;
}

/** The path of a declared output; its real path must stay inside /ferry/outputs. */
async function checkedOutputPath(outputsDir: string, name: string): Promise<string> {
  const path = join(outputsDir, name);
  const shown = join(FERRY_DIR, 'outputs', name);
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) throw new AgentError(`declared output "${name}" was not written to ${shown}`);
  const root = await realpath(outputsDir);
  if (real !== path && !real.startsWith(`${root}/`)) throw new AgentError(`declared output "${name}" at ${shown} resolves outside ${join(FERRY_DIR, 'outputs')}`);
  return path;
}

/**
 * The declared results the step wrote, as text. A result file that is missing is left out (the
 * operator names it when it fails the step); one larger than the cap, or not a regular file
 * (a symlink could point at the agent's own files), fails the publication here.
 */
async function readResults(resultsDir: string, names: string[]): Promise<Record<string, string>> {
  const results: Record<string, string> = {};
  for (const name of names) {
    const path = join(resultsDir, name);
    const stats = await lstat(path).catch(() => undefined);
    if (!stats) continue;
    const shown = join(FERRY_DIR, 'results', name);
    if (!stats.isFile()) throw new AgentError(`result "${name}": ${shown} is not a regular file`);
    if (stats.size > RESULT_MAX_BYTES) throw new AgentError(`result "${name}" is ${stats.size} bytes, more than the limit of ${RESULT_MAX_BYTES}`);
    const text = await readFile(path, 'utf8');
    // A trailing newline (echo > file) is not part of the value.
    results[name] = text.replace(/\r?\n$/, '');
  }
  return results;
}

/** metrics.json, if the step wrote one: its size is checked before it is read. */
async function readMetrics(path: string): Promise<Record<string, number> | undefined> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const { size } = await fh.stat();
    if (size > METRICS_FILE_MAX_BYTES) throw new AgentError(`${METRICS_FILE} is ${size} bytes, more than the limit of ${METRICS_FILE_MAX_BYTES}`);
    const text = await fh.readFile('utf8');
    try {
      return numericMetrics(JSON.parse(text));
    } catch (err) {
      throw new AgentError(`${METRICS_FILE} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  } finally {
    await fh.close();
  }
}

/** Runs `ferry agent <phase>`; writes the outcome to the termination log and returns the exit code. */
export async function runAgent(phase: string, env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const terminationLog = env[ENV.terminationLog] || '/dev/termination-log';
  // Peak memory is logged so that operators (and bench/agent-memory.ts) can see it stays bounded.
  const finished = () => log.info('agent finished', { phase, maxRssKiB: process.resourceUsage().maxRSS });
  try {
    if (phase === 'fetch-inputs') {
      await fetchInputs({ env, log });
      finished();
      return 0;
    }
    if (phase === 'publish-outputs') {
      const message = await publishOutputs({ env, log });
      await writeFile(terminationLog, JSON.stringify(message));
      finished();
      return 0;
    }
    throw new AgentError(`unknown agent phase "${phase}" (fetch-inputs or publish-outputs)`);
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    log.error('agent failed', { phase, error: text });
    await writeFile(terminationLog, text.slice(0, TERMINATION_MESSAGE_LIMIT)).catch(() => undefined);
    return 1;
  }
}
