// The Pipeline resource: a reusable DAG of steps, each a versioned container image with
// typed parameters, declared artifacts, resources, retries, timeout and cache policy.
import { ConditionsSchema, type KubeObject } from './common.ts';
import {
  Type, cel, dnsLabel, enumOf, mapOf, namedList, object, quantity, scalar, stringSet, type Static,
} from './schema-kit.ts';

export const MAX_STEPS = 200;
export const MAX_PARAMETERS = 64;

export const PARAMETER_TYPES = ['string', 'int', 'float', 'bool'] as const;
export type ParameterType = (typeof PARAMETER_TYPES)[number];

export const OUTPUT_TYPES = ['dataset', 'model', 'metrics', 'file'] as const;

const parameterName = (description: string) =>
  Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-zA-Z_][a-zA-Z0-9_-]*$', description });

// NOTE: CEL cannot see untyped (preserve-unknown-fields) values, so the operator checks
// that a default fits its type (Ready=False, reason InvalidDefault).
export const ParameterSpecSchema = object({
  name: parameterName('Parameter name, referenced as $(params.<name>) and FERRY_PARAM_<NAME>.'),
  type: enumOf(PARAMETER_TYPES, { description: 'Value type; run values are checked against it.', default: 'string' }),
  default: Type.Optional(scalar('Value used when a run does not set one; without it the parameter is required.')),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
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

export const InputSchema = object(
  {
    name: parameterName('Input name; the step reads it at /ferry/inputs/<name>.'),
    from: Type.Optional(
      object(
        {
          step: dnsLabel('An upstream step (reachable through dependsOn).'),
          output: parameterName('The output of that step.'),
        },
        { description: "Another step's output." },
      ),
    ),
    model: Type.Optional(ModelReferenceSchema),
    fromPipeline: Type.Optional(
      object(
        {
          name: Type.String({ minLength: 1, maxLength: 253, description: 'Another Pipeline in the namespace.' }),
          step: dnsLabel('Its step that published the output.'),
          output: parameterName('The output.'),
          run: Type.Optional(Type.String({ maxLength: 253, description: 'A named run; the latest succeeded run when unset.' })),
        },
        { description: "An output of another pipeline's run." },
      ),
    ),
  },
  cel({
    rule: '(has(self.from) ? 1 : 0) + (has(self.model) ? 1 : 0) + (has(self.fromPipeline) ? 1 : 0) == 1',
    message: 'set exactly one of from, model or fromPipeline',
  }),
);

export const OutputSchema = object({
  name: parameterName('Output name; the step writes it at /ferry/outputs/<name>.'),
  type: enumOf(OUTPUT_TYPES, { default: 'file' }),
  register: Type.Optional(
    object({ name: dnsLabel('Model name the output is registered as (type model only).') }),
  ),
});

export const ResourcesSchema = object({
  requests: Type.Optional(mapOf(quantity(), { maxProperties: 16 })),
  limits: Type.Optional(mapOf(quantity(), { maxProperties: 16 })),
});

export const TolerationSchema = object({
  key: Type.Optional(Type.String({ maxLength: 316 })),
  operator: Type.Optional(enumOf(['Exists', 'Equal'] as const)),
  value: Type.Optional(Type.String({ maxLength: 63 })),
  effect: Type.Optional(enumOf(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const)),
  tolerationSeconds: Type.Optional(Type.Integer()),
});

export const RetriesSchema = object({
  limit: Type.Integer({ minimum: 0, maximum: 20, description: 'Attempts after the first one.' }),
  backoffSeconds: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 3600, default: 10, description: 'Delay before the first retry; doubles for each later one.' }),
  ),
  maxBackoffSeconds: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 86400, default: 300, description: 'Upper bound of the delay.' }),
  ),
});

export const CachePolicySchema = object({
  policy: enumOf(['Enabled', 'Disabled'] as const, { default: 'Enabled' }),
  maxAge: Type.Optional(
    Type.String({ pattern: '^([0-9]+(s|m|h|d))+$', maxLength: 32, description: 'Oldest reusable result, e.g. 7d or 12h.' }),
  ),
  version: Type.Optional(Type.String({ maxLength: 63, description: 'Bump to invalidate earlier results.' })),
});

export const StepSchema = object(
  {
    name: dnsLabel('Step name, unique in the pipeline.'),
    image: Type.String({ minLength: 1, maxLength: 512, description: 'Container image; a tag is resolved to a digest when the run starts.' }),
    command: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64 })),
    args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
    env: Type.Optional(namedList(EnvVarSchema, 64, 'Environment variables of the step container.')),
    parameters: Type.Optional(stringSet(MAX_PARAMETERS, 63, 'Pipeline parameters passed as FERRY_PARAM_<NAME>.')),
    dependsOn: Type.Optional(stringSet(MAX_STEPS, 63, 'Steps that must succeed before this one starts.')),
    inputs: Type.Optional(namedList(InputSchema, 32, 'Artifacts this step reads.')),
    outputs: Type.Optional(namedList(OutputSchema, 32, 'Artifacts this step writes.')),
    resources: Type.Optional(ResourcesSchema),
    nodeSelector: Type.Optional(mapOf(Type.String({ maxLength: 63 }), { maxProperties: 32 })),
    tolerations: Type.Optional(Type.Array(TolerationSchema, { maxItems: 32 })),
    retries: Type.Optional(RetriesSchema),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 604800, description: 'Limit of one attempt.' })),
    cache: Type.Optional(CachePolicySchema),
  },
  cel(
    { rule: '!has(self.dependsOn) || !(self.name in self.dependsOn)', message: 'a step may not depend on itself', fieldPath: '.dependsOn' },
    {
      rule: "!has(self.outputs) || self.outputs.all(o, !has(o.register) || o.type == 'model')",
      message: 'only outputs of type model can be registered',
      fieldPath: '.outputs',
    },
  ),
);

export const IMAGE_POLICIES = ['ResolveTags', 'RequireDigest'] as const;
export const METRIC_OPERATORS = ['>=', '>', '<=', '<'] as const;

/** When a registered model is promoted automatically after a successful run. */
export const PromotionSchema = object({
  model: dnsLabel('The registered model the policy applies to.'),
  stage: enumOf(['Staging', 'Production'] as const, { description: 'Stage to promote to.' }),
  when: Type.Array(
    object({
      metric: Type.String({ minLength: 1, maxLength: 63 }),
      operator: enumOf(METRIC_OPERATORS),
      value: Type.Number(),
    }),
    { maxItems: 16, description: 'Every condition must hold for the new version.' },
  ),
  betterThanCurrent: Type.Optional(
    object({
      metric: Type.String({ minLength: 1, maxLength: 63 }),
      direction: enumOf(['Higher', 'Lower'] as const, { default: 'Higher' }),
    }, { description: 'Also require the new version to beat the version now in that stage.' }),
  ),
});

export const PipelineSpecSchema = object({
  description: Type.Optional(Type.String({ maxLength: 4096 })),
  imagePolicy: Type.Optional(
    enumOf(IMAGE_POLICIES, {
      default: 'ResolveTags',
      description: 'ResolveTags pins each tag to its digest when a run starts; RequireDigest refuses images without a digest.',
    }),
  ),
  imagePullSecrets: Type.Optional(
    namedList(object({ name: dnsLabel('A kubernetes.io/dockerconfigjson Secret.') }), 8, 'Credentials for resolving and pulling step images.'),
  ),
  parameters: Type.Optional(namedList(ParameterSpecSchema, MAX_PARAMETERS, 'Typed parameters a run may set.')),
  steps: namedList(StepSchema, MAX_STEPS, 'The steps of the DAG.', 1),
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 2592000, description: 'Limit of a whole run.' })),
  promotion: Type.Optional(Type.Array(PromotionSchema, { maxItems: 8 })),
  inference: Type.Optional(
    object({ pipelineRef: object({ name: Type.String({ minLength: 1, maxLength: 253 }) }) }, {
      description: 'The inference Pipeline bound to the models this Pipeline registers.',
    }),
  ),
});

export const PipelineStatusSchema = object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(ConditionsSchema),
  specHash: Type.Optional(Type.String({ maxLength: 80, description: 'sha256 of the canonical spec.' })),
  stepCount: Type.Optional(Type.Integer({ minimum: 0 })),
});

export type ParameterSpec = Static<typeof ParameterSpecSchema>;
export type EnvVar = Static<typeof EnvVarSchema>;
export type StepSpec = Static<typeof StepSchema>;
export type InputSpecOfStep = Static<typeof InputSchema>;
export type ModelReference = Static<typeof ModelReferenceSchema>;
export type Promotion = Static<typeof PromotionSchema>;
export type PipelineSpec = Static<typeof PipelineSpecSchema>;
export type PipelineStatus = Static<typeof PipelineStatusSchema>;

export interface Pipeline extends KubeObject {
  spec: PipelineSpec;
  status?: PipelineStatus;
}
