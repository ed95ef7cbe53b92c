// A forEach step's collection (pure): the outputs and results of each item that succeeded, in
// item order, as one canonical JSON document stored content-addressed in the run's namespace.
// Status names it (uri, digest, size) instead of holding an entry per item, so a fan-out of
// 10,000 items keeps the run's status small; later steps read their inputs and results from it.
import { COLLECTION_MAX_BYTES } from '../../agent/protocol.ts';
import type { StepOutput } from '../../api/v1alpha1/pipeline-run.ts';
import type { ResultSpec } from '../../api/v1alpha1/pipeline.ts';
import { canonicalJson, sha256Hex } from '../../configuration/canonical-json.ts';
import { resultValue } from './results.ts';

export interface CollectedItem {
  index: number;
  outputs: StepOutput[];
  results?: Record<string, string>;
}

export interface Collection {
  /** Items in the fan-out, succeeded or not. */
  total: number;
  /** The succeeded items, by index. */
  items: CollectedItem[];
}

export { COLLECTION_MAX_BYTES };

export function serializeCollection(collection: Collection): { bytes: Buffer; hex: string } {
  const bytes = Buffer.from(canonicalJson(collection));
  return { bytes, hex: sha256Hex(bytes) };
}

/** A stored collection, checked against its digest and shape; a SyntaxError says what is wrong. */
export function parseCollection(bytes: Buffer, digest: string): Collection {
  if (`sha256:${sha256Hex(bytes)}` !== digest) throw new SyntaxError(`the collection does not have the digest ${digest}`);
  const value = JSON.parse(bytes.toString('utf8')) as Partial<Collection>;
  if (!Number.isInteger(value.total) || !Array.isArray(value.items) || !value.items.every((i) => Number.isInteger(i?.index) && Array.isArray(i.outputs))) {
    throw new SyntaxError('the collection is not {total, items: [{index, outputs}]}');
  }
  return value as Collection;
}

/** One result of every collected item, as the JSON list later steps see ($(steps.x.results.y)). */
export function collectedResult(collection: Collection, spec: ResultSpec): string {
  return canonicalJson(collection.items.map((item) => {
    const text = item.results?.[spec.name];
    return text === undefined ? null : resultValue(spec.type ?? 'string', text);
  }));
}
