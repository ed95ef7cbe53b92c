// Shapes shared by the three Ferry resources: conditions and the group/version.
// Conditions follow the Kubernetes API conventions (metav1.Condition).
import { Type, enumOf, object, timestamp, type Static } from './schema-kit.ts';

export const GROUP = 'ferry.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const ConditionSchema = object({
  type: Type.String({ maxLength: 316, description: 'Type of condition, e.g. Ready or Succeeded.' }),
  status: enumOf(['True', 'False', 'Unknown'] as const),
  reason: Type.String({ maxLength: 1024, description: 'CamelCase reason for the last transition.' }),
  message: Type.String({ maxLength: 32768, description: 'Human-readable details of the last transition.' }),
  lastTransitionTime: timestamp('When the status last changed.'),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type Condition = Static<typeof ConditionSchema>;

export const ConditionsSchema = Type.Array(ConditionSchema, {
  maxItems: 16,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/** Metadata every Ferry object carries, as this code reads it. */
export interface ObjectMeta {
  name: string;
  /** With an empty name, the API server names the object this prefix plus a random suffix. */
  generateName?: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}
