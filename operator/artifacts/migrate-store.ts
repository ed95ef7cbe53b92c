// `ferry migrate-store`: the one-off step of the upgrade to namespaced keys. Objects written
// before it live at `blobs/sha256/<hex>` and belong to no namespace; each namespace can read
// only its own copy, `<namespace>/blobs/sha256/<hex>` (tenancy.ts). This copies every legacy
// blob that a namespace's runs recorded (step outputs in PipelineRun status, which only the
// operator writes) into that namespace. Idempotent: a copy that exists is left alone.
import type { PipelineRun } from '../api/v1alpha1/pipeline-run.ts';
import type { KubeClient } from '../kube/client.ts';
import { PIPELINE_RUNS } from '../kube/resources.ts';
import type { Logger } from '../observability/logger.ts';
import type { ArtifactStore } from './store.ts';
import { uriInNamespace } from './tenancy.ts';

export interface MigrationReport {
  /** Legacy blobs copied into a namespace. */
  copied: number;
  /** Already there from an earlier migration. */
  present: number;
  /** Named by a run but missing from the store (deleted, or never written). */
  missing: number;
}

const legacyKey = /^blobs\/sha256\/[0-9a-f]{64}$/;

/** The legacy URIs each namespace's runs recorded, by namespace. */
export function legacyReferences(store: ArtifactStore, runs: PipelineRun[]): Map<string, Set<string>> {
  const references = new Map<string, Set<string>>();
  for (const run of runs) {
    const namespace = run.metadata.namespace ?? '';
    for (const output of (run.status?.steps ?? []).flatMap((s) => s.outputs ?? [])) {
      let key: string;
      try {
        key = store.keyOf(output.uri);
      } catch {
        continue; // another store's URI: not ours to migrate
      }
      if (!legacyKey.test(key)) continue;
      if (!references.has(namespace)) references.set(namespace, new Set());
      references.get(namespace)!.add(output.uri);
    }
  }
  return references;
}

export async function migrateStore(client: KubeClient, store: ArtifactStore, namespaces: string[], log: Logger): Promise<MigrationReport> {
  const runs = namespaces.length === 0
    ? (await client.list<PipelineRun>(PIPELINE_RUNS, undefined)).items
    : (await Promise.all(namespaces.map((ns) => client.list<PipelineRun>(PIPELINE_RUNS, ns)))).flatMap((l) => l.items);
  const report: MigrationReport = { copied: 0, present: 0, missing: 0 };
  for (const [namespace, uris] of legacyReferences(store, runs)) {
    for (const legacy of uris) {
      const target = uriInNamespace(store, legacy, namespace);
      if (await store.exists(target)) {
        report.present++;
        continue;
      }
      if (!(await store.exists(legacy))) {
        report.missing++;
        log.warn('legacy blob missing', { namespace, uri: legacy });
        continue;
      }
      // putBlob re-hashes what it copies: the copy's name proves the bytes are the same.
      const copy = await store.putBlob(namespace, await store.read(legacy));
      if (copy.uri !== target) throw new Error(`copying ${legacy} into namespace ${namespace} gave ${copy.uri}: the legacy blob does not hold what its name says`);
      report.copied++;
      log.info('copied legacy blob', { namespace, from: legacy, to: copy.uri, bytes: copy.size });
    }
  }
  return report;
}
