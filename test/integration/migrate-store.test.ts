// The upgrade to namespaced keys against the real API server and a real file store: legacy
// blobs (`blobs/sha256/<hex>` at the root) that a namespace's runs recorded are copied into
// that namespace, and another namespace naming the same legacy URI still finds nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PipelineRun } from '../../operator/api/v1alpha1/pipeline-run.ts';
import { migrateStore } from '../../operator/artifacts/migrate-store.ts';
import { FileArtifactStore } from '../../operator/artifacts/file-store.ts';
import { uriInNamespace } from '../../operator/artifacts/tenancy.ts';
import { PIPELINE_RUNS } from '../../operator/kube/resources.ts';
import { createLogger } from '../../operator/observability/logger.ts';
import { pipelineRun } from '../builders.ts';
import { connect, type TestCluster } from '../harness/cluster.ts';

let cluster: TestCluster;
let owner: string;
let other: string;
let dir: string;
let store: FileArtifactStore;
const quiet = createLogger({ level: 'error', write: () => undefined });

before(async () => {
  cluster = connect();
  owner = await cluster.createNamespace('migrate-a');
  other = await cluster.createNamespace('migrate-b');
  dir = await mkdtemp(join(tmpdir(), 'ferry-migrate-'));
  store = new FileArtifactStore(`file://${dir}`);
});
after(async () => {
  await cluster?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

/** A blob written the way stores did before keys were namespaced. */
async function legacyBlob(content: string): Promise<{ uri: string; digest: string }> {
  const hex = createHash('sha256').update(content).digest('hex');
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'blobs', 'sha256', hex), content);
  return { uri: store.uriFor(`blobs/sha256/${hex}`), digest: `sha256:${hex}` };
}

describe('ferry migrate-store', () => {
  it("copies the legacy blobs a namespace's runs recorded into it, once, and only there", async () => {
    const kept = await legacyBlob('rows\n');
    const gone = { uri: store.uriFor(`blobs/sha256/${'0'.repeat(64)}`), digest: `sha256:${'0'.repeat(64)}` };
    const run = await cluster.client.create<PipelineRun>(PIPELINE_RUNS, owner, pipelineRun({ name: 'before-upgrade', namespace: owner }));
    await cluster.client.replaceStatus(PIPELINE_RUNS, { ...run, status: { phase: 'Succeeded', steps: [
      { name: 'prepare', phase: 'Succeeded', outputs: [{ name: 'data', ...kept, size: 5 }, { name: 'lost', ...gone, size: 1 }] },
    ] } });

    assert.equal(await store.exists(uriInNamespace(store, kept.uri, owner)), false, 'before: the owner reads nothing');
    const first = await migrateStore(cluster.client, store, [owner, other], quiet);
    assert.deepEqual(first, { copied: 1, present: 0, missing: 1 });
    const copy = uriInNamespace(store, kept.uri, owner);
    assert.equal(copy, store.uriFor(`${owner}/blobs/sha256/${kept.digest.slice(7)}`));
    assert.equal((await store.readAll(copy, 100)).toString(), 'rows\n');
    assert.equal(await store.exists(uriInNamespace(store, kept.uri, other)), false, 'another namespace naming the legacy URI finds nothing');

    assert.deepEqual(await migrateStore(cluster.client, store, [owner, other], quiet), { copied: 0, present: 1, missing: 1 }, 'a second run changes nothing');
  });
});
