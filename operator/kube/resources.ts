// Where each kind lives in the API, and the URL paths to reach it.
import { GROUP, VERSION } from '../api/v1alpha1/common.ts';

export interface Resource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export const PODS: Resource = { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true };
export const SECRETS: Resource = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true };
export const SERVICES: Resource = { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true };
export const DEPLOYMENTS: Resource = { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true };
export const REPLICA_SETS: Resource = { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true };
export const NAMESPACES: Resource = { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false };
export const LEASES: Resource = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true };
export const EVENTS: Resource = { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true };
export const PIPELINES: Resource = { group: GROUP, version: VERSION, plural: 'pipelines', kind: 'Pipeline', namespaced: true };
export const PIPELINE_RUNS: Resource = { group: GROUP, version: VERSION, plural: 'pipelineruns', kind: 'PipelineRun', namespaced: true };
export const MODEL_VERSIONS: Resource = { group: GROUP, version: VERSION, plural: 'modelversions', kind: 'ModelVersion', namespaced: true };

export const apiVersionOf = (r: Resource) => (r.group ? `${r.group}/${r.version}` : r.version);

/** `/api/v1/namespaces/ns/pods/name/status`, leaving out the parts not given. */
export function resourcePath(r: Resource, namespace?: string, name?: string, subresource?: string): string {
  let path = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespaced && namespace) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${r.plural}`;
  if (name) path += `/${encodeURIComponent(name)}`;
  if (subresource) path += `/${subresource}`;
  return path;
}
