// The ModelVersion resource: one immutable registered model version with a mutable
// stage (None → Staging → Production → Archived) and aliases.
import { ConditionsSchema, type KubeObject } from './common.ts';
import { Type, cel, dnsLabel, enumOf, mapOf, object, stringSet, timestamp, type Static } from './schema-kit.ts';

export const MODEL_STAGES = ['None', 'Staging', 'Production', 'Archived'] as const;
export type ModelStage = (typeof MODEL_STAGES)[number];
export const ENDPOINT_STATES = ['Live', 'RollingOut', 'RolloutFailed', 'Replaced', 'Stopped'] as const;
export type EndpointState = (typeof ENDPOINT_STATES)[number];

const immutable = (field: string) => cel({ rule: 'self == oldSelf', message: `${field} is immutable` });

export const ModelVersionSpecSchema = object({
  modelName: dnsLabel('Registered model name.', immutable('modelName')),
  version: Type.Integer({ minimum: 1, description: 'Version number, increasing per model and namespace.', ...immutable('version') }),
  artifact: object(
    {
      uri: Type.String({ minLength: 1, maxLength: 2048 }),
      digest: Type.String({ pattern: '^sha256:[a-f0-9]{64}$', maxLength: 71 }),
    },
    immutable('artifact'),
  ),
  metrics: Type.Optional(mapOf(Type.Number(), { maxProperties: 64, ...immutable('metrics') })),
  source: Type.Optional(
    object(
      {
        pipeline: Type.Optional(Type.String({ maxLength: 253 })),
        run: Type.Optional(Type.String({ maxLength: 253 })),
        step: Type.Optional(Type.String({ maxLength: 63 })),
        configurationURI: Type.Optional(Type.String({ maxLength: 2048 })),
        configurationDigest: Type.Optional(Type.String({ maxLength: 71 })),
      },
      immutable('source'),
    ),
  ),
  inference: Type.Optional(
    object(
      { pipeline: Type.String({ maxLength: 253 }), specHash: Type.String({ maxLength: 71 }) },
      { description: 'The inference Pipeline bound to this version when it was registered.', ...immutable('inference') },
    ),
  ),
  stage: enumOf(MODEL_STAGES, { default: 'None', description: 'Lifecycle stage; at most one version per model is in Production.' }),
  aliases: Type.Optional(stringSet(10, 63, 'Names such as champion, unique per model.')),
  description: Type.Optional(Type.String({ maxLength: 4096 })),
});

export const ModelVersionStatusSchema = object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(ConditionsSchema),
  stage: Type.Optional(enumOf(MODEL_STAGES)),
  aliases: Type.Optional(stringSet(10, 63, 'Aliases this version holds, as acknowledged by the operator.')),
  history: Type.Optional(
    Type.Array(
      object({
        stage: enumOf(MODEL_STAGES),
        at: timestamp('When the stage was entered.'),
        by: Type.Optional(Type.String({ maxLength: 253 })),
        reason: Type.Optional(Type.String({ maxLength: 1024 })),
      }),
      { maxItems: 64 },
    ),
  ),
  endpoints: Type.Optional(
    Type.Array(
      object({
        name: Type.String({ maxLength: 253, description: 'The serving Pipeline.' }),
        state: enumOf(ENDPOINT_STATES, { description: 'Live: answers requests there; RollingOut: being rolled out; RolloutFailed: did not become ready; Replaced: another version took over; Stopped: nothing is served there now.' }),
        since: timestamp('When it entered that state.'),
        message: Type.Optional(Type.String({ maxLength: 2048 })),
      }),
      { maxItems: 16, description: 'The endpoints that serve, or served, this version.' },
    ),
  ),
  servingHistory: Type.Optional(
    Type.Array(
      object({ endpoint: Type.String({ maxLength: 253 }), from: timestamp('Live from.'), until: Type.Optional(timestamp('Live until.')) }),
      { maxItems: 32, description: 'When this version answered requests at which endpoint (all periods are in PostgreSQL).' },
    ),
  ),
});

export type ModelVersionSpec = Static<typeof ModelVersionSpecSchema>;
export type ModelVersionStatus = Static<typeof ModelVersionStatusSchema>;

export interface ModelVersion extends KubeObject {
  spec: ModelVersionSpec;
  status?: ModelVersionStatus;
}

export const modelVersionName = (model: string, version: number) => `${model}-v${version}`;
