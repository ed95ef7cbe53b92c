// Resolving model references (pure): `{name: iris, stage: Production}`, `{version: 3}` or
// `{alias: champion}` to exactly one ModelVersion among the registered ones.
import type { ModelVersion } from '../api/v1alpha1/model-version.ts';
import type { ModelReference } from '../api/v1alpha1/pipeline.ts';

export type ModelResolution = { version: ModelVersion } | { error: string };

export const describeReference = (ref: ModelReference): string =>
  `model "${ref.name}" ${ref.stage ? `in stage ${ref.stage}` : ref.version ? `version ${ref.version}` : `with alias "${ref.alias}"`}`;

export function resolveModelReference(ref: ModelReference, versions: ModelVersion[]): ModelResolution {
  const ofModel = versions.filter((v) => v.spec.modelName === ref.name && !v.metadata.deletionTimestamp);
  let matches: ModelVersion[];
  if (ref.version !== undefined) matches = ofModel.filter((v) => v.spec.version === ref.version);
  else if (ref.alias !== undefined) matches = ofModel.filter((v) => (v.spec.aliases ?? []).includes(ref.alias!));
  else matches = ofModel.filter((v) => v.spec.stage === ref.stage);
  if (matches.length === 0) {
    const known = ofModel.length === 0 ? 'no versions are registered' : `registered: ${[...ofModel].sort((a, b) => a.spec.version - b.spec.version).map((v) => `v${v.spec.version} (${v.spec.stage})`).join(', ')}`;
    return { error: `${describeReference(ref)} does not exist (${known})` };
  }
  // During a promotion two versions may briefly share a stage: the newest wins.
  matches.sort((a, b) => b.spec.version - a.spec.version);
  return { version: matches[0]! };
}
