// The Pipeline resource: a reusable DAG of steps, each a versioned container image with
// typed parameters, declared artifacts, resources, retries, timeout and cache policy.
import { RESULT_MAX_BYTES } from '../../agent/protocol.ts';
import { ConditionsSchema, type KubeObject } from './common.ts';
import {
  Type, cel, dnsLabel, enumOf, mapOf, namedList, object, quantity, scalar, stringSet, type Static,
} from './schema-kit.ts';
import { EnvVarSchema, MAX_PARAMETERS, ModelReferenceSchema, MODEL_REFERENCE_STAGES, ResourcesSchema } from './pipeline-parts.ts';
import { SchedulesSchema, ScheduleStatusesSchema } from './schedule.ts';
import { ServingSpecSchema, ServingStatusSchema } from './serving.ts';

export { EnvVarSchema, MAX_PARAMETERS, ModelReferenceSchema, MODEL_REFERENCE_STAGES, ResourcesSchema };

export const MAX_STEPS = 200;
/** Steps of a pipeline's `finally` list; a run's status holds an entry for each of them too. */
export const MAX_FINALLY_STEPS = 16;
export const MAX_RESULTS = 16;
export { RESULT_MAX_BYTES };
/** The most items one forEach may fan out over. */
export const MAX_FOREACH_ITEMS = 10000;
export const CONDITION_MAX_LENGTH = 2048;

/** `json` holds any JSON value, written as JSON text (a list a step can fan out over, say). */
export const PARAMETER_TYPES = ['string', 'int', 'float', 'bool', 'json'] as const;
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

export const TolerationSchema = object({
  key: Type.Optional(Type.String({ maxLength: 316 })),
  operator: Type.Optional(enumOf(['Exists', 'Equal'] as const)),
  value: Type.Optional(Type.String({ maxLength: 63 })),
  effect: Type.Optional(enumOf(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const)),
  tolerationSeconds: Type.Optional(Type.Integer()),
});

export const RetriesSchema = object({
  limit: Type.Integer({ minimum: 0, maximum: 20, description: 'Attempts after the first one.' }),
  policy: Type.Optional(
    enumOf(['Always', 'OnError', 'OnInfrastructure'] as const, {
      default: 'Always',
      description: 'Failures retried within limit: Always (all but an image that cannot be pulled or a Pod no node can run), OnError (non-zero exits and OOMKilled), OnInfrastructure (Evicted, Preempted, NodeLost). Infrastructure losses are first retried without using limit.',
    }),
  ),
  backoffSeconds: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 3600, default: 10, description: 'Delay before the first retry; multiplied by factor for each later one.' }),
  ),
  maxBackoffSeconds: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 86400, default: 300, description: 'Upper bound of the delay.' }),
  ),
  factor: Type.Optional(Type.Number({ minimum: 1, maximum: 10, default: 2, description: 'Backoff multiplier between retries.' })),
});

export const CachePolicySchema = object({
  policy: enumOf(['Enabled', 'Disabled'] as const, { default: 'Enabled' }),
  maxAge: Type.Optional(
    Type.String({ pattern: '^([0-9]+(s|m|h|d))+$', maxLength: 32, description: 'Oldest reusable result, e.g. 7d or 12h.' }),
  ),
  version: Type.Optional(Type.String({ maxLength: 63, description: 'Bump to invalidate earlier results.' })),
});

export const ResultSpecSchema = object({
  name: parameterName('Result name: the step writes it to /ferry/results/<name>; later steps read it as $(steps.<step>.results.<name>).'),
  type: enumOf(PARAMETER_TYPES, { description: 'Value type; the written value is checked against it.', default: 'string' }),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
});

/** Any JSON value (a forEach item): the operator checks what the schema cannot. */
const anyValue = Type.Unsafe<unknown>({ 'x-kubernetes-preserve-unknown-fields': true });

export const ForEachSchema = object(
  {
    items: Type.Optional(Type.Array(anyValue, { maxItems: MAX_FOREACH_ITEMS, description: 'A literal list; each item is one Pod.' })),
    parameter: Type.Optional(parameterName('A json parameter whose value is a list.')),
    result: Type.Optional(
      object({ step: dnsLabel('An upstream step.'), name: parameterName('Its json result, a list known only at run time.') }),
    ),
    maxParallelism: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_FOREACH_ITEMS, description: 'Most items running at once; unlimited when unset.' })),
    minSuccessRatio: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, default: 1, description: 'Share of items that must succeed for the step to succeed.' }),
    ),
  },
  {
    description: 'Runs the step once per item ($(item), $(item.<field>), FERRY_ITEM); later steps read every item\'s outputs at /ferry/inputs/<name>/<index>/ and its results as a list.',
    // NOTE: CEL cannot see `items` (untyped values), so the operator checks that exactly one is set.
    ...cel({ rule: '!(has(self.parameter) && has(self.result))', message: 'set exactly one of items, parameter or result' }),
  },
);

// Volumes, service account, scheduling and Pod metadata of a step (docs/architecture.md, tenancy):
// only volume sources of the namespace itself (claims, ConfigMaps, Secrets) and emptyDirs, no
// hostPath and no other type; mounted into the step container only, never at or under /ferry.
export const MAX_VOLUMES = 16;
export const MAX_VOLUME_MOUNTS = 32;
/** Mount paths Ferry owns in the step container: /ferry (the agent's work volume). */
export const RESERVED_MOUNT_PATH = '/ferry';
/** Where a step that sets automountServiceAccountToken finds the token, ca.crt and namespace (as client libraries expect). */
export const SERVICE_ACCOUNT_TOKEN_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

// One path segment that is neither "." nor "..", so a path is normalised (no /ferry/../ferry).
const SEGMENT = '([^/.][^/]*|\\.[^/.][^/]*|\\.\\.[^/]+)';
const relativePath = (description: string) =>
  Type.String({ minLength: 1, maxLength: 1024, pattern: `^${SEGMENT}(/${SEGMENT})*$`, description });

const KeyToPathSchema = object({
  key: Type.String({ minLength: 1, maxLength: 253 }),
  path: relativePath('Relative file path of the key in the volume.'),
});
const dnsSubdomain = (description: string) =>
  Type.String({ minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', description });
const fileMode = () => Type.Integer({ minimum: 0, maximum: 0o777, description: 'File mode bits (0 to 0777, e.g. 0644 is 420).' });

export const VolumeSchema = object(
  {
    name: dnsLabel('Volume name, referenced by volumeMounts; ferry and ferry-* are Ferry\'s own.'),
    persistentVolumeClaim: Type.Optional(object({ claimName: dnsSubdomain('A PersistentVolumeClaim of the namespace.'), readOnly: Type.Optional(Type.Boolean()) })),
    configMap: Type.Optional(object({
      name: dnsSubdomain('A ConfigMap of the namespace.'),
      items: Type.Optional(Type.Array(KeyToPathSchema, { maxItems: 64 })),
      defaultMode: Type.Optional(fileMode()),
    })),
    secret: Type.Optional(object({
      secretName: dnsSubdomain('A Secret of the namespace.'),
      items: Type.Optional(Type.Array(KeyToPathSchema, { maxItems: 64 })),
      defaultMode: Type.Optional(fileMode()),
    })),
    emptyDir: Type.Optional(object({
      medium: Type.Optional(enumOf(['', 'Memory'] as const, { description: 'Memory is a tmpfs (e.g. /dev/shm), counted in the container memory.' })),
      sizeLimit: Type.Optional(quantity()),
    }, { description: 'Scratch space of the attempt; on disk without sizeLimit it gets the /ferry limit.' })),
  },
  cel(
    {
      rule: '(has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1',
      message: 'set exactly one of persistentVolumeClaim, configMap, secret or emptyDir',
    },
    { rule: "self.name != 'ferry' && !self.name.startsWith('ferry-')", message: 'volume names ferry and ferry-* are Ferry\'s own', fieldPath: '.name' },
  ),
);

export const VolumeMountSchema = object(
  {
    name: dnsLabel('A volume of the step.'),
    mountPath: Type.String({
      minLength: 2, maxLength: 1024, pattern: `^(/${SEGMENT})+$`,
      description: 'Absolute, normalised path in the step container; not /, /ferry or under it.',
    }),
    readOnly: Type.Optional(Type.Boolean()),
    subPath: Type.Optional(relativePath('A path inside the volume to mount instead of its root.')),
  },
  cel({
    rule: "self.mountPath != '/ferry' && !self.mountPath.startsWith('/ferry/')",
    message: '/ferry is Ferry\'s own: mount elsewhere',
    fieldPath: '.mountPath',
  }),
);

const labelKey = () => Type.String({ minLength: 1, maxLength: 316 });
const labelValues = () => Type.Optional(Type.Array(Type.String({ maxLength: 63 }), { maxItems: 32 }));

const NodeSelectorTermSchema = object(
  {
    matchExpressions: Type.Optional(Type.Array(
      object({ key: labelKey(), operator: enumOf(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'] as const), values: labelValues() }),
      { maxItems: 16 },
    )),
  },
  { description: 'Node labels; keys as allowed for nodeSelector. (No matchFields: naming nodes is not offered.)' },
);

const PodAffinityTermSchema = object(
  {
    labelSelector: Type.Optional(object({
      matchLabels: Type.Optional(mapOf(Type.String({ maxLength: 63 }), { maxProperties: 16 })),
      matchExpressions: Type.Optional(Type.Array(
        object({ key: labelKey(), operator: enumOf(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const), values: labelValues() }),
        { maxItems: 16 },
      )),
    })),
    topologyKey: Type.String({ minLength: 1, maxLength: 316, description: 'A node label key, as allowed for nodeSelector.' }),
  },
  { description: "Pods of the step's own namespace (no namespaces or namespaceSelector: other tenants' Pods are not looked at)." },
);

const PodAffinitySchema = object({
  requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(Type.Array(PodAffinityTermSchema, { maxItems: 8 })),
  preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(Type.Array(
    object({ weight: Type.Integer({ minimum: 1, maximum: 100 }), podAffinityTerm: PodAffinityTermSchema }),
    { maxItems: 8 },
  )),
});

/** The scheduling subset of a Pod's affinity a step may ask for; every key is checked against the admin's nodeSelector keys. */
export const AffinitySchema = object({
  nodeAffinity: Type.Optional(object({
    requiredDuringSchedulingIgnoredDuringExecution: Type.Optional(object({
      nodeSelectorTerms: Type.Array(NodeSelectorTermSchema, { minItems: 1, maxItems: 8 }),
    })),
    preferredDuringSchedulingIgnoredDuringExecution: Type.Optional(Type.Array(
      object({ weight: Type.Integer({ minimum: 1, maximum: 100 }), preference: NodeSelectorTermSchema }),
      { maxItems: 16 },
    )),
  })),
  podAffinity: Type.Optional(PodAffinitySchema),
  podAntiAffinity: Type.Optional(PodAffinitySchema),
});

export const MAX_POD_LABELS = 32;
export const MAX_POD_ANNOTATIONS = 16;
export const POD_ANNOTATION_VALUE_MAX_LENGTH = 4096;

const POD_METADATA_RULES: Array<{ rule: string; message: string; fieldPath?: string }> = [
  { rule: '!has(self.labels) || self.labels.all(k, size(k) <= 316)', message: 'a label key has at most 316 characters', fieldPath: '.labels' },
  { rule: '!has(self.annotations) || self.annotations.all(k, size(k) <= 316)', message: 'an annotation key has at most 316 characters', fieldPath: '.annotations' },
];

/**
 * Labels and annotations for every step Pod (the Pipeline's, and a run's over them). NOTE: what the
 * schema cannot check cheaply (key syntax, Ferry's and Kubernetes' reserved keys) is checked by the
 * operator (validate.ts, podMetadataProblem); Ferry's own labels always win.
 */
export function podMetadataSchema(description: string, ...rules: Array<{ rule: string; message: string; fieldPath?: string }>) {
  return object(
    {
      labels: Type.Optional(mapOf(
        Type.String({ maxLength: 63, pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$' }),
        { maxProperties: MAX_POD_LABELS },
      )),
      annotations: Type.Optional(mapOf(Type.String({ maxLength: POD_ANNOTATION_VALUE_MAX_LENGTH }), { maxProperties: MAX_POD_ANNOTATIONS })),
    },
    { description, ...cel(...POD_METADATA_RULES, ...rules) },
  );
}

export const PodMetadataSchema = podMetadataSchema(
  'Labels and annotations copied onto every step Pod; not ferry.dev/*, app.kubernetes.io/managed-by or keys Kubernetes and container runtimes reserve.',
);

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
    volumes: Type.Optional(namedList(VolumeSchema, MAX_VOLUMES, "The namespace's claims, ConfigMaps and Secrets, or emptyDirs, for volumeMounts.")),
    volumeMounts: Type.Optional(
      Type.Array(VolumeMountSchema, {
        maxItems: MAX_VOLUME_MOUNTS,
        description: 'Volumes mounted into the step container (the agent containers see only /ferry).',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['mountPath'],
      }),
    ),
    serviceAccountName: Type.Optional(dnsSubdomain('A ServiceAccount of the namespace the step Pod runs as; default when unset.')),
    automountServiceAccountToken: Type.Optional(
      Type.Boolean({ description: "Mount the service account's token into the step container (only); false when unset." }),
    ),
    affinity: Type.Optional(AffinitySchema),
    priorityClassName: Type.Optional(dnsSubdomain('A PriorityClass the admin allows (--allowed-priority-classes).')),
    runtimeClassName: Type.Optional(dnsSubdomain('A RuntimeClass the admin allows (--allowed-runtime-classes).')),
    results: Type.Optional(namedList(ResultSpecSchema, MAX_RESULTS, 'Small typed values the step writes to /ferry/results/<name> (at most 4096 bytes each).')),
    when: Type.Optional(
      Type.String({
        minLength: 1, maxLength: CONDITION_MAX_LENGTH,
        description: 'A CEL condition over params.<name> and steps.<step>.results.<name>; false skips the step (docs/control-flow.md).',
      }),
    ),
    forEach: Type.Optional(ForEachSchema),
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

export const FAILURE_POLICIES = ['FailFast', 'Continue'] as const;
export type FailurePolicy = (typeof FAILURE_POLICIES)[number];
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
  podMetadata: Type.Optional(PodMetadataSchema),
  parameters: Type.Optional(namedList(ParameterSpecSchema, MAX_PARAMETERS, 'Typed parameters a run may set.')),
  steps: namedList(StepSchema, MAX_STEPS, 'The steps of the DAG.', 1),
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 2592000, description: 'Limit of a whole run.' })),
  finally: Type.Optional(
    namedList(StepSchema, MAX_FINALLY_STEPS, 'Steps that run after all others, whatever the outcome; they see $(run.status) and $(run.failedSteps).'),
  ),
  failurePolicy: Type.Optional(
    enumOf(FAILURE_POLICIES, {
      default: 'FailFast',
      description: 'FailFast stops the run at the first failed step; Continue lets independent branches finish.',
    }),
  ),
  promotion: Type.Optional(Type.Array(PromotionSchema, { maxItems: 8 })),
  inference: Type.Optional(
    object({ pipelineRef: object({ name: Type.String({ minLength: 1, maxLength: 253 }) }) }, {
      description: 'The inference Pipeline bound to the models this Pipeline registers.',
    }),
  ),
  serving: Type.Optional({ ...ServingSpecSchema, description: 'An endpoint serving the model version a reference names; it follows the registry (docs/serving.md).' }),
  schedules: Type.Optional(SchedulesSchema),
});

export const PipelineStatusSchema = object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(ConditionsSchema),
  specHash: Type.Optional(Type.String({ maxLength: 80, description: 'sha256 of the canonical spec.' })),
  stepCount: Type.Optional(Type.Integer({ minimum: 0 })),
  serving: Type.Optional(ServingStatusSchema),
  schedules: Type.Optional({ ...ScheduleStatusesSchema, description: 'Per schedule: the last and next scheduled times and the last run.' }),
});

export type ParameterSpec = Static<typeof ParameterSpecSchema>;
export type EnvVar = Static<typeof EnvVarSchema>;
export type StepSpec = Static<typeof StepSchema>;
export type VolumeSpec = Static<typeof VolumeSchema>;
export type VolumeMountSpec = Static<typeof VolumeMountSchema>;
export type AffinitySpec = Static<typeof AffinitySchema>;
export type PodMetadata = Static<typeof PodMetadataSchema>;
export type ResultSpec = Static<typeof ResultSpecSchema>;
export type ForEachSpec = Static<typeof ForEachSchema>;
export type InputSpecOfStep = Static<typeof InputSchema>;
export type ModelReference = Static<typeof ModelReferenceSchema>;
export type Promotion = Static<typeof PromotionSchema>;
export type PipelineSpec = Static<typeof PipelineSpecSchema>;
export type PipelineStatus = Static<typeof PipelineStatusSchema>;

export interface Pipeline extends KubeObject {
  spec: PipelineSpec;
  status?: PipelineStatus;
}
