// The step agent through S3 presigned URLs against a real S3 server (SeaweedFS on 127.0.0.1):
// outputs go up create-once with the signed If-None-Match header and a Content-Length (AWS
// refuses a chunked PUT, so the agent spools the tar to /ferry first), and come back verified.
// A recording proxy in front of the server shows what the agent sent.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchInputs, publishOutputs } from '../../operator/agent/agent.ts';
import { ENV } from '../../operator/agent/protocol.ts';
import { S3ArtifactStore } from '../../operator/artifacts/s3-store.ts';
import { createLogger } from '../../operator/observability/logger.ts';
import { stepAccess } from '../../operator/controllers/pipeline-run/step-access.ts';
import { startS3, type S3Server } from '../harness/s3.ts';

const quiet = createLogger({ level: 'error', write: () => undefined });
const bucket = 'ferry-agent';
process.env.AWS_EC2_METADATA_DISABLED = 'true'; // never the link-local metadata service
let s3: S3Server | undefined;
let proxy: Server | undefined;
let proxyUrl = '';
const seen: Array<{ method: string; path: string; headers: IncomingHttpHeaders }> = [];
let dir = '';

before(async () => {
  s3 = await startS3({ buckets: [bucket] });
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  const target = new URL(s3.endpoint);
  // Forwards as is (Host included, so signatures hold) and remembers each request's method and headers.
  proxy = createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', () => resolve()));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'ferry-s3-agent-'));
});
after(async () => {
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the agent through S3 presigned URLs', () => {
  it('publishes create-once with a length, spooling under /ferry, and a consumer fetches the same bytes', async () => {
    // Signed for the proxy's address: the host is part of the signature.
    const store = new S3ArtifactStore(`s3://${bucket}/ferry`, { endpoint: proxyUrl, forcePathStyle: true });
    const step = { name: 'produce', image: 'x', outputs: [{ name: 'data', type: 'dataset' as const }] };
    const configuration = await store.createOnce('team-a/p/r/pipeline-configuration.json', Buffer.from('{}\n'));
    const access = await stepAccess({ store, namespace: 'team-a', runUid: 'uid-1', step, attempt: 1, inputs: [], configuration, now: new Date() });
    const output = access.outputs[0]!;
    assert.equal(output.lengthRequired, true);
    assert.deepEqual(output.headers, { 'if-none-match': '*' });

    const ferry = join(dir, 'producer');
    await mkdir(join(ferry, 'outputs'), { recursive: true });
    await writeFile(join(ferry, 'outputs', 'data'), 'rows\n'.repeat(10_000));
    const env = { [ENV.dir]: ferry, [ENV.outputs]: JSON.stringify(access.outputs), [ENV.report]: JSON.stringify(access.report) };
    const message = await publishOutputs({ env, log: quiet });
    assert.ok('report' in message);
    const put = seen.find((r) => r.method === 'PUT' && r.path.includes('/data.tar'));
    assert.ok(put, 'the agent PUT its output');
    assert.equal(put.headers['transfer-encoding'], undefined, 'not chunked');
    assert.equal(Number(put.headers['content-length']), message.report.outputs[0]!.size);
    assert.equal(put.headers['if-none-match'], '*');
    assert.deepEqual((await readdir(ferry)).filter((f) => f.startsWith('.upload-')), [], 'the spooled tar is removed');

    // A second publish of the same attempt is refused by the store (create-once).
    await assert.rejects(publishOutputs({ env, log: quiet }), /HTTP 412/);

    const published = message.report.outputs[0]!;
    const consumer = join(dir, 'consumer');
    const reading = await stepAccess({ store, namespace: 'team-a', runUid: 'uid-1', step: { name: 'consume', image: 'x' }, attempt: 1, inputs: [{ name: 'data', uri: published.uri, digest: published.digest }], configuration, now: new Date() });
    await fetchInputs({ env: { [ENV.dir]: consumer, [ENV.inputs]: JSON.stringify(reading.inputs), [ENV.configuration]: JSON.stringify(reading.configuration) }, log: quiet });
    assert.equal(await readFile(join(consumer, 'inputs', 'data'), 'utf8'), 'rows\n'.repeat(10_000));
    assert.equal(await readFile(join(consumer, 'config.json'), 'utf8'), '{}\n');
    assert.ok(!(JSON.stringify(env) + JSON.stringify(reading)).includes(process.env.AWS_SECRET_ACCESS_KEY!), 'the secret key is in no URL or header given to the Pod');
  });
});
