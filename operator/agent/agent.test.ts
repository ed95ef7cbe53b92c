// The agent against a real artifact server on 127.0.0.1 (signed URLs, as in a step Pod) and a
// real /ferry directory: what it publishes, and what a step's own files cannot make it do.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startArtifactServer, type RunningArtifactServer } from '../artifacts/artifact-server.ts';
import { FileArtifactStore } from '../artifacts/file-store.ts';
import { HttpArtifactStore } from '../artifacts/http-store.ts';
import { createLogger } from '../observability/logger.ts';
import { fetchInputs, publishOutputs } from './agent.ts';
import { ENV, METRICS_FILE_MAX_BYTES, RESULT_MAX_BYTES, type OutputSpec } from './protocol.ts';

const quiet = createLogger({ level: 'error', write: () => undefined });
let root: string;
let server: RunningArtifactServer;
let store: HttpArtifactStore;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ferry-agent-test-'));
  const key = Buffer.alloc(32, 3);
  server = await startArtifactServer({ host: '127.0.0.1', port: 0, store: new FileArtifactStore(`file://${root}/store`), signingKey: key, log: quiet });
  store = new HttpArtifactStore(`file://${root}/store`, server.url, key);
});
after(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
/** A fresh /ferry of one step attempt, and the signed URLs for its outputs. */
async function attempt(outputs: string[]): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const n = ++counter;
  const dir = join(root, `pod-${n}`);
  await mkdir(join(dir, 'outputs'), { recursive: true });
  const expiresAt = new Date(Date.now() + 60_000);
  const spec: OutputSpec[] = outputs.map((name) => {
    const key = `team-a/runs/uid-${n}/step/1/${name}.tar`;
    return { name, type: 'dataset', uri: store.uriFor(key), url: store.createGrant(key, expiresAt).url };
  });
  const reportKey = `team-a/runs/uid-${n}/step/1/report.json`;
  return {
    dir,
    env: {
      [ENV.dir]: dir,
      [ENV.outputs]: JSON.stringify(spec),
      [ENV.report]: JSON.stringify({ uri: store.uriFor(reportKey), url: store.createGrant(reportKey, expiresAt).url }),
    },
  };
}

describe('the agent with signed URLs', () => {
  it('publishes outputs to their keys and a consumer fetches them, with no store root or credential in its environment', async () => {
    const producer = await attempt(['data']);
    await writeFile(join(producer.dir, 'outputs', 'data'), 'rows\n');
    const message = await publishOutputs({ env: producer.env, log: quiet });
    assert.ok('report' in message);
    const [data] = message.report.outputs;
    assert.match(data!.uri, /\/team-a\/runs\/uid-\d+\/step\/1\/data\.tar$/);
    assert.equal(producer.env[ENV.store], undefined);

    const consumer = join(root, 'consumer');
    await fetchInputs({
      env: { [ENV.dir]: consumer, [ENV.inputs]: JSON.stringify([{ ...data, url: store.readGrant(data!.uri, new Date(Date.now() + 60_000)).url }]) },
      log: quiet,
    });
    assert.equal(await readFile(join(consumer, 'inputs', 'data'), 'utf8'), 'rows\n');
  });

  it('refuses a /ferry/outputs that the step replaced with a symlink', async () => {
    const step = await attempt(['data']);
    await rm(join(step.dir, 'outputs'), { recursive: true });
    await mkdir(join(root, 'elsewhere'), { recursive: true });
    await writeFile(join(root, 'elsewhere', 'data'), 'secret');
    await symlink(join(root, 'elsewhere'), join(step.dir, 'outputs'));
    await assert.rejects(publishOutputs({ env: step.env, log: quiet }), { message: '/ferry/outputs is not a directory (a symlink is refused)' });
  });

  it('refuses an output that is a symlink to a file outside /ferry/outputs', async () => {
    const step = await attempt(['data']);
    await writeFile(join(root, 'outside.txt'), 'not yours');
    await symlink(join(root, 'outside.txt'), join(step.dir, 'outputs', 'data'));
    await assert.rejects(publishOutputs({ env: step.env, log: quiet }), { message: 'declared output "data" at /ferry/outputs/data resolves outside /ferry/outputs' });
  });

  it('refuses a metrics.json over its limit before reading it, and keeps only metric names of at most 63 characters', async () => {
    const big = await attempt([]);
    await writeFile(join(big.dir, 'outputs', 'metrics.json'), Buffer.alloc(METRICS_FILE_MAX_BYTES + 1, 0x20));
    await assert.rejects(publishOutputs({ env: big.env, log: quiet }), { message: `metrics.json is ${METRICS_FILE_MAX_BYTES + 1} bytes, more than the limit of ${METRICS_FILE_MAX_BYTES}` });

    const names = await attempt([]);
    await writeFile(join(names.dir, 'outputs', 'metrics.json'), JSON.stringify({ accuracy: 0.9, ['x'.repeat(64)]: 1, ['y'.repeat(63)]: 2 }));
    const message = await publishOutputs({ env: names.env, log: quiet });
    assert.ok('report' in message);
    assert.deepEqual(message.report.metrics, { accuracy: 0.9, ['y'.repeat(63)]: 2 });
  });

  it('fails an attempt whose URL has expired with what happens next, and a second write of an output', async () => {
    const step = await attempt(['data']);
    await writeFile(join(step.dir, 'outputs', 'data'), 'x');
    const expired = JSON.parse(step.env[ENV.outputs]!) as OutputSpec[];
    const key = store.keyOf(expired[0]!.uri!);
    const stale = { ...step.env, [ENV.outputs]: JSON.stringify([{ ...expired[0], url: store.createGrant(key, new Date(Date.now() - 1000)).url }]) };
    await assert.rejects(publishOutputs({ env: stale, log: quiet }), /HTTP 403 the URL has expired.*retried with new ones/);
    await publishOutputs({ env: step.env, log: quiet });
    await assert.rejects(publishOutputs({ env: step.env, log: quiet }), /HTTP 412 already exists \(an earlier attempt wrote it already\)/);
  });

  it('reports the declared results a step wrote, refuses one over 4096 bytes or a symlink, and leaves out a missing one', async () => {
    const step = await attempt([]);
    await mkdir(join(step.dir, 'results'), { recursive: true });
    await writeFile(join(step.dir, 'results', 'side'), 'heads\n');
    const env = { ...step.env, [ENV.results]: JSON.stringify(['side', 'missing']) };
    const message = await publishOutputs({ env, log: quiet });
    assert.ok('report' in message);
    assert.deepEqual(message.report.results, { side: 'heads' });

    await writeFile(join(step.dir, 'results', 'side'), 'x'.repeat(RESULT_MAX_BYTES + 1));
    await assert.rejects(publishOutputs({ env, log: quiet }), { message: `result "side" is ${RESULT_MAX_BYTES + 1} bytes, more than the limit of ${RESULT_MAX_BYTES}` });
    await rm(join(step.dir, 'results', 'side'));
    await symlink('/etc/hostname', join(step.dir, 'results', 'side'));
    await assert.rejects(publishOutputs({ env, log: quiet }), { message: 'result "side": /ferry/results/side is not a regular file' });
  });

  it('fetches a collection input, every item into <name>/<index>, checking each digest', async () => {
    const items: Array<{ index: number; uri: string; digest: string; url: string }> = [];
    for (const index of [0, 2]) {
      const producer = await attempt(['model']);
      await writeFile(join(producer.dir, 'outputs', 'model'), `weights ${index}\n`);
      const message = await publishOutputs({ env: producer.env, log: quiet });
      assert.ok('report' in message);
      const [model] = message.report.outputs;
      items.push({ index, uri: model!.uri, digest: model!.digest, url: store.readGrant(model!.uri, new Date(Date.now() + 60_000)).url });
    }
    const listKey = `team-a/runs/uid-list/pick/1/input-models.json`;
    const list = await store.createOnce(listKey, Buffer.from(JSON.stringify(items)));
    const listInput = { name: 'models', uri: list.uri, digest: list.digest, collection: true, url: store.readGrant(list.uri, new Date(Date.now() + 60_000)).url };
    const consumer = join(root, 'collector');
    await fetchInputs({ env: { [ENV.dir]: consumer, [ENV.inputs]: JSON.stringify([listInput]) }, log: quiet });
    assert.equal(await readFile(join(consumer, 'inputs', 'models', '0'), 'utf8'), 'weights 0\n');
    assert.equal(await readFile(join(consumer, 'inputs', 'models', '2'), 'utf8'), 'weights 2\n');

    const tampered = [{ ...items[0]!, digest: `sha256:${'0'.repeat(64)}` }];
    const bad = await store.createOnce(`team-a/runs/uid-list/pick/2/input-models.json`, Buffer.from(JSON.stringify(tampered)));
    const badInput = { name: 'models', uri: bad.uri, digest: bad.digest, collection: true, url: store.readGrant(bad.uri, new Date(Date.now() + 60_000)).url };
    await assert.rejects(fetchInputs({ env: { [ENV.dir]: join(root, 'collector-2'), [ENV.inputs]: JSON.stringify([badInput]) }, log: quiet }), /input "models\[0\]" .* does not have the expected digest/);
  });
});
