import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { startFakeGcs } from '../test/harness/fake-gcs.ts';
import { GcsArtifactStore } from '../operator/artifacts/gcs-store.ts';
const MiB = 1 << 20;
const gcs = await startFakeGcs({ buckets: ['probe-bucket'] });
const mode = process.argv[2] ?? 'read';
try {
  const store = new GcsArtifactStore('gs://probe-bucket', { apiEndpoint: gcs.endpoint, uploadChunkBytes: 0 });
  const up = new GcsArtifactStore('gs://probe-bucket', { apiEndpoint: gcs.endpoint, uploadChunkBytes: 0 });
  const s = await up.putBlob(createReadStream('/tmp/ferry-smoke/in.bin'));
  await store.exists(s.uri); // load the library
  const max = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  const before = process.memoryUsage();
  const t = setInterval(() => { const m = process.memoryUsage(); for (const k of Object.keys(max) as (keyof typeof max)[]) max[k] = Math.max(max[k], m[k]); }, 2);
  if (mode === 'read') await pipeline(await store.read(s.uri), createWriteStream('/tmp/ferry-smoke/out.bin'));
  else if (mode === 'fetch') { const r = await fetch(`${gcs.endpoint}/download/storage/v1/b/probe-bucket/o/${encodeURIComponent(s.uri.slice('gs://probe-bucket/'.length))}?alt=media`); await pipeline(r.body!, createWriteStream('/tmp/ferry-smoke/out.bin')); }
  else await store.putBlob(createReadStream('/tmp/ferry-smoke/in.bin'));
  clearInterval(t);
  const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k}=${(v / MiB).toFixed(0)}`).join(' ');
  console.log(mode, 'before', fmt(before as unknown as Record<string, number>)); console.log(mode, 'max   ', fmt(max));
} finally { await gcs.stop(); }
