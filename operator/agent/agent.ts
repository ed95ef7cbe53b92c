// The step agent: the operator's own program run inside step Pods, before and after the user's
// container. fetch-inputs downloads each input into /ferry/inputs/<name>, verifying its sha256,
// and writes the frozen configuration to /ferry/config.json; publish-outputs uploads each
// declared output as a content-addressed tar and reports URIs and digests through the
// termination message. It needs no Kubernetes API access.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openArtifactStore } from '../artifacts/open.ts';
import type { ArtifactStore } from '../artifacts/store.ts';
import type { Logger } from '../observability/logger.ts';
import {
  ENV, FERRY_DIR, METRICS_FILE, TERMINATION_MESSAGE_LIMIT, numericMetrics,
  type InputSpec, type OutputSpec, type PublishedOutput, type StepReport, type TerminationMessage,
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
  await mkdir(join(dir, 'inputs'), { recursive: true });
  await mkdir(join(dir, 'outputs'), { recursive: true });
  const store = inputs.length > 0 || env[ENV.configuration] ? openStore(env) : undefined;

  const configurationText = env[ENV.configuration];
  const configuration = configurationText ? (JSON.parse(configurationText) as { uri: string; digest: string }) : undefined;
  if (configuration && store) {
    const bytes = await store.readAll(configuration.uri);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (digest !== configuration.digest) {
      throw new AgentError(`configuration ${configuration.uri} has digest ${digest}, expected ${configuration.digest}`);
    }
    await writeFile(join(dir, 'config.json'), bytes);
  }

  for (const input of inputs) {
    const target = join(dir, 'inputs', input.name);
    const hasher = hashing();
    await Promise.all([pipeline(await store!.read(input.uri), hasher), extractArtifact(hasher, target)]);
    const digest = hasher.digest();
    if (digest !== input.digest) {
      await rm(target, { recursive: true, force: true });
      throw new AgentError(`input "${input.name}" from ${input.uri} has digest ${digest}, expected ${input.digest}`);
    }
    log.info('fetched input', { input: input.name, uri: input.uri, digest });
  }
}

export async function publishOutputs({ env, log }: AgentContext): Promise<TerminationMessage> {
  const dir = dirOf(env);
  const outputs = parseList<OutputSpec>(env, ENV.outputs);
  const store = openStore(env);
  const published: PublishedOutput[] = [];
  for (const output of outputs) {
    const path = join(dir, 'outputs', output.name);
    const exists = await stat(path).then(() => true, () => false);
    if (!exists) throw new AgentError(`declared output "${output.name}" was not written to ${join(FERRY_DIR, 'outputs', output.name)}`);
    const stored = await store.putBlob(packArtifact(path));
    published.push({ name: output.name, uri: stored.uri, digest: stored.digest, size: stored.size });
    log.info('published output', { output: output.name, uri: stored.uri, digest: stored.digest, bytes: stored.size });
  }
  const report: StepReport = { outputs: published };
  const metricsText = await readFile(join(dir, 'outputs', METRICS_FILE), 'utf8').catch(() => undefined);
  if (metricsText !== undefined) {
    try {
      report.metrics = numericMetrics(JSON.parse(metricsText));
    } catch (err) {
      throw new AgentError(`${METRICS_FILE} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const message: TerminationMessage = { v: 1, report };
  if (JSON.stringify(message).length <= TERMINATION_MESSAGE_LIMIT) return message;
  // Too large for the kubelet's 4 KiB: store the report and point at it.
  const manifest = await store.putBlob(Readable.from([Buffer.from(JSON.stringify(report))]));
  return { v: 1, manifest: { uri: manifest.uri, digest: manifest.digest } };
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
