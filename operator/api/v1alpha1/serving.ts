// An endpoint a Pipeline declares (`spec.serving`): a server image that serves the model
// version a reference names (a stage, an alias or a fixed version), as a Deployment and a
// Service the operator keeps; it rolls to another version when the reference moves. Its state
// is `status.serving` of the Pipeline, and its moments of truth are conditions there and on the
// ModelVersions concerned. docs/serving.md is the contract a server image meets.
import { EnvVarSchema, ModelReferenceSchema, ResourcesSchema } from './pipeline-parts.ts';
import { Type, dnsLabel, namedList, object, timestamp, type Static } from './schema-kit.ts';

export const DEFAULT_SERVING_PORT = 8080;
export const DEFAULT_READINESS_PATH = '/healthz';
export const DEFAULT_ROLLOUT_TIMEOUT_SECONDS = 300;
export const MAX_SERVING_REPLICAS = 50;
/** Serving periods kept in a Pipeline's status (all of them are in PostgreSQL). */
export const MAX_SERVING_HISTORY = 20;

export const ServingSpecSchema = object({
  model: ModelReferenceSchema,
  image: Type.String({ minLength: 1, maxLength: 512, description: 'The server image; a tag is pinned to its digest when a rollout starts.' }),
  command: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64 })),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
  env: Type.Optional(namedList(EnvVarSchema, 64, 'Environment of the server container (FERRY_* and PORT are the operator\'s).')),
  port: Type.Integer({ minimum: 1024, maximum: 65535, default: DEFAULT_SERVING_PORT, description: 'The port the server listens on (also given as PORT); the Service exposes it.' }),
  readinessPath: Type.String({
    minLength: 1, maxLength: 1024, pattern: '^/', default: DEFAULT_READINESS_PATH,
    description: 'An HTTP GET path that answers 2xx once the model is loaded; traffic goes only to ready replicas.',
  }),
  replicas: Type.Integer({ minimum: 1, maximum: MAX_SERVING_REPLICAS, default: 1 }),
  resources: Type.Optional(ResourcesSchema),
  rolloutTimeoutSeconds: Type.Integer({
    minimum: 10, maximum: 3600, default: DEFAULT_ROLLOUT_TIMEOUT_SECONDS,
    description: 'How long a new version (or a new server spec) has to become ready; otherwise the endpoint goes back to the version it served.',
  }),
  serviceAccountName: Type.Optional(dnsLabel('The server Pod\'s ServiceAccount; its token is not mounted.')),
});

/** One model version at an endpoint, as the endpoint's status names it. */
const ServedVersionSchema = object({
  modelVersion: Type.String({ maxLength: 253, description: 'The ModelVersion object.' }),
  version: Type.Integer({ minimum: 1 }),
  digest: Type.String({ maxLength: 71 }),
  image: Type.Optional(Type.String({ maxLength: 1024, description: 'The server image, pinned by digest.' })),
  intent: Type.Optional(Type.String({ maxLength: 80, description: 'Hash of what decides its Pod template: the serving spec and the version.' })),
});

export const ServingStatusSchema = object({
  service: Type.String({ maxLength: 63, description: 'The Service (and Deployment) of the endpoint.' }),
  url: Type.String({ maxLength: 512, description: 'Where the endpoint answers inside the cluster.' }),
  model: Type.String({ maxLength: 63, description: 'The registered model served.' }),
  live: Type.Optional(object({ ...ServedVersionSchema.properties, since: timestamp('When it became live.') }, { description: 'The version that answers requests.' })),
  rollout: Type.Optional(object({ ...ServedVersionSchema.properties, startedAt: timestamp('When the rollout began.') }, { description: 'The version being rolled out.' })),
  failed: Type.Optional(object({
    ...ServedVersionSchema.properties,
    reason: Type.String({ maxLength: 128 }),
    message: Type.String({ maxLength: 2048 }),
    at: timestamp('When the rollout was given up.'),
  }, { description: 'The last rollout that failed; it is not tried again until the version or the serving spec changes.' })),
  readyReplicas: Type.Optional(Type.Integer({ minimum: 0 })),
  replicas: Type.Optional(Type.Integer({ minimum: 0 })),
  /** When the signed model URL in the Pod template expires; the endpoint is rolled again before then. */
  grantExpiresAt: Type.Optional(timestamp('When the model URL of the Pod template expires (it is renewed before).')),
  history: Type.Optional(Type.Array(object({
    modelVersion: Type.String({ maxLength: 253 }),
    version: Type.Integer({ minimum: 1 }),
    digest: Type.String({ maxLength: 71 }),
    from: timestamp('When it became live.'),
    until: Type.Optional(timestamp('When it stopped being live.')),
  }), { maxItems: MAX_SERVING_HISTORY, description: 'The latest serving periods, oldest first.' })),
});

export type ServingSpec = Static<typeof ServingSpecSchema>;
export type ServingStatus = Static<typeof ServingStatusSchema>;
export type ServedVersion = Static<typeof ServedVersionSchema>;
