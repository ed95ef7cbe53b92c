// What the endpoints serving a model say about one of its versions (pure): whether it answers
// there, is being rolled out, failed to start, or was replaced; its serving periods; and the
// Serving condition that sums it up. Read from the Pipelines' status (their one writer is the
// Pipeline controller), so the ModelVersion's status is written by its own controller only.
import type { Condition } from '../../api/v1alpha1/common.ts';
import { CONDITION_SERVING, Reasons } from '../../api/v1alpha1/conditions.ts';
import type { EndpointState, ModelVersion, ModelVersionStatus } from '../../api/v1alpha1/model-version.ts';
import type { Pipeline } from '../../api/v1alpha1/pipeline.ts';

const MAX_ENDPOINTS = 16;
const MAX_PERIODS = 32;

type EndpointEntry = NonNullable<ModelVersionStatus['endpoints']>[number];
type Period = NonNullable<ModelVersionStatus['servingHistory']>[number];

export interface VersionServing {
  endpoints?: EndpointEntry[];
  servingHistory?: Period[];
  condition?: Omit<Condition, 'lastTransitionTime'>;
}

function entryAt(version: ModelVersion, pipeline: Pipeline): EndpointEntry | undefined {
  const serving = pipeline.status?.serving;
  if (!serving || serving.model !== version.spec.modelName) return undefined;
  const me = version.metadata.name;
  const name = pipeline.metadata.name;
  const entry = (state: EndpointState, since: string, message?: string): EndpointEntry => ({ name, state, since, ...(message ? { message } : {}) });
  if (serving.live?.modelVersion === me) return entry('Live', serving.live.since, `answers at ${serving.url}`);
  if (serving.rollout?.modelVersion === me) return entry('RollingOut', serving.rollout.startedAt, serving.live ? `${serving.live.modelVersion} answers meanwhile` : undefined);
  if (serving.failed?.modelVersion === me) {
    return entry('RolloutFailed', serving.failed.at, `${serving.failed.message}; ${serving.live ? `${serving.live.modelVersion} stays live` : 'nothing is served'} at ${name}`);
  }
  const last = (serving.history ?? []).filter((h) => h.modelVersion === me && h.until !== undefined).at(-1);
  if (!last) return undefined;
  return serving.live ? entry('Replaced', last.until!, `replaced by ${serving.live.modelVersion}`) : entry('Stopped', last.until!, 'nothing is served there now');
}

/** The periods the endpoints' status holds for this version, merged with those it already recorded (status histories are bounded). */
function periodsOf(version: ModelVersion, pipelines: Pipeline[]): Period[] {
  const byKey = new Map<string, Period>();
  for (const p of version.status?.servingHistory ?? []) byKey.set(`${p.endpoint}@${p.from}`, p);
  for (const pipeline of pipelines) {
    if (pipeline.status?.serving?.model !== version.spec.modelName) continue;
    for (const h of pipeline.status.serving.history ?? []) {
      if (h.modelVersion !== version.metadata.name) continue;
      byKey.set(`${pipeline.metadata.name}@${h.from}`, { endpoint: pipeline.metadata.name, from: h.from, ...(h.until ? { until: h.until } : {}) });
    }
  }
  return [...byKey.values()].sort((a, b) => a.from.localeCompare(b.from)).slice(-MAX_PERIODS);
}

const CONDITION_OF: Record<EndpointState, { status: 'True' | 'False'; reason: string }> = {
  Live: { status: 'True', reason: Reasons.Live },
  RollingOut: { status: 'False', reason: Reasons.RollingOut },
  RolloutFailed: { status: 'False', reason: Reasons.RolloutFailed },
  Replaced: { status: 'False', reason: Reasons.Replaced },
  Stopped: { status: 'False', reason: Reasons.Stopped },
};
/** Which entry the condition tells of when there are several endpoints: the most telling first. */
const PRECEDENCE: EndpointState[] = ['Live', 'RolloutFailed', 'RollingOut', 'Replaced', 'Stopped'];

export function versionServing(version: ModelVersion, pipelines: Pipeline[], generation: number): VersionServing {
  const endpoints = pipelines.flatMap((p) => entryAt(version, p) ?? []).sort((a, b) => a.name.localeCompare(b.name)).slice(0, MAX_ENDPOINTS);
  const servingHistory = periodsOf(version, pipelines);
  const first = PRECEDENCE.map((state) => endpoints.find((e) => e.state === state)).find((e) => e !== undefined);
  const condition = first && {
    type: CONDITION_SERVING, ...CONDITION_OF[first.state], observedGeneration: generation,
    message: `${first.state === 'Live' ? 'live' : first.state === 'RolloutFailed' ? 'did not start' : first.state === 'RollingOut' ? 'being rolled out' : first.state.toLowerCase()} at endpoint ${first.name} since ${first.since}${first.message ? `: ${first.message}` : ''}`,
  };
  return {
    ...(endpoints.length > 0 ? { endpoints } : {}),
    ...(servingHistory.length > 0 ? { servingHistory } : {}),
    ...(condition ? { condition } : {}),
  };
}
