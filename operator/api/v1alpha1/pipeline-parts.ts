// Pieces of a Pipeline's spec that its steps, its endpoint (serving.ts), its schedules
// (schedule.ts) and runs share.
import { Type, cel, dnsLabel, enumOf, mapOf, object, quantity, scalar } from './schema-kit.ts';

export const MAX_PARAMETERS = 64;

/** A run's value for one parameter (a PipelineRun's, or a schedule's for the runs it starts). */
export const RunParameterSchema = object({
  name: Type.String({ minLength: 1, maxLength: 63 }),
  value: scalar('A string, number or boolean, checked against the parameter type and its length (at most 4096 characters).'),
});

const KeyRefSchema = object({
  name: dnsLabel('Name of the Secret or ConfigMap.'),
  key: Type.String({ minLength: 1, maxLength: 253 }),
});

export const EnvVarSchema = object(
  {
    name: Type.String({ minLength: 1, maxLength: 256, pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$' }),
    value: Type.Optional(Type.String({ maxLength: 32768 })),
    valueFrom: Type.Optional(
      object(
        {
          secretKeyRef: Type.Optional(KeyRefSchema),
          configMapKeyRef: Type.Optional(KeyRefSchema),
        },
        cel({ rule: 'has(self.secretKeyRef) != has(self.configMapKeyRef)', message: 'set exactly one of secretKeyRef or configMapKeyRef' }),
      ),
    ),
  },
  cel({ rule: '!(has(self.value) && has(self.valueFrom))', message: 'set value or valueFrom, not both' }),
);

export const MODEL_REFERENCE_STAGES = ['Staging', 'Production'] as const;

/** A registered model, by stage, version or alias: resolved to one ModelVersion when a run is frozen. */
export const ModelReferenceSchema = object(
  {
    name: dnsLabel('Registered model name.'),
    stage: Type.Optional(enumOf(MODEL_REFERENCE_STAGES)),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    alias: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  },
  cel({
    rule: '(has(self.stage) ? 1 : 0) + (has(self.version) ? 1 : 0) + (has(self.alias) ? 1 : 0) == 1',
    message: 'set exactly one of stage, version or alias',
  }),
);

export const ResourcesSchema = object({
  requests: Type.Optional(mapOf(quantity(), { maxProperties: 16 })),
  limits: Type.Optional(mapOf(quantity(), { maxProperties: 16 })),
});

