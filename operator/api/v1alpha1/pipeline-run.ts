// The PipelineRun resource: one execution of a Pipeline with parameter values.
// Status stays compact (one small entry per declared step, never a copy of the spec)
// so that a 200-step run stays far below etcd's request size limit.
import { ConditionsSchema, type KubeObject } from './common.ts';
import { FAILURE_POLICIES, MAX_FINALLY_STEPS, MAX_PARAMETERS, MAX_RESULTS, MAX_STEPS, RESULT_MAX_BYTES, podMetadataSchema } from './pipeline.ts';
import { RunParameterSchema } from './pipeline-parts.ts';
import { Type, cel, dnsLabel, enumOf, mapOf, namedList, object, timestamp, type Static } from './schema-kit.ts';

export const RUN_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Cancelled'] as const;
export type RunPhase = (typeof RUN_PHASES)[number];

export const STEP_PHASES = ['Pending', 'Running', 'Retrying', 'Succeeded', 'Cached', 'Failed', 'Cancelled', 'Skipped'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

// NOTE: the value is untyped in the schema (a string, number or boolean); the operator
// checks it against the parameter's type and fails the run with InvalidParameters.
/**
 * NOTE: the same bound as the value in status: a spec the API accepts must never make every
 * status write fail. The untyped field cannot carry a CEL rule (the API server cannot type it),
 * so the operator checks it (parameters.ts) before anything is frozen or a Pod created.
 */
export const PARAMETER_VALUE_MAX_LENGTH = 4096;

export { RunParameterSchema };

export const PipelineRunSpecSchema = object(
  {
    pipelineRef: Type.Optional(
      object(
        { name: Type.String({ minLength: 1, maxLength: 253, description: 'A Pipeline in the same namespace.' }) },
        cel({ rule: 'self == oldSelf', message: 'pipelineRef is immutable' }),
      ),
    ),
    reproduceFrom: Type.Optional(
      object(
        {
          run: Type.Optional(Type.String({ minLength: 1, maxLength: 253, description: 'An earlier run in the same namespace.' })),
          configuration: Type.Optional(
            object({
              uri: Type.String({ minLength: 1, maxLength: 2048 }),
              digest: Type.String({ pattern: '^sha256:[a-f0-9]{64}$', maxLength: 71, description: 'The digest the configuration must have.' }),
            }),
          ),
        },
        cel(
          { rule: 'has(self.run) != has(self.configuration)', message: 'set exactly one of run or configuration' },
          { rule: 'self == oldSelf', message: 'reproduceFrom is immutable' },
        ),
      ),
    ),
    parameters: Type.Optional(
      Type.Array(RunParameterSchema, {
        maxItems: MAX_PARAMETERS,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        ...cel({ rule: 'self == oldSelf', message: 'parameters are immutable' }),
      }),
    ),
    parallelism: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_STEPS, description: 'Most steps running at once; unlimited when unset.' }),
    ),
    timeoutSeconds: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 2592000, description: "Limit of the whole run; overrides the Pipeline's." }),
    ),
    resumeFrom: Type.Optional(
      Type.String({
        minLength: 1, maxLength: 253,
        description: "A failed run to resume: its configuration and succeeded steps are reused; failed steps and what follows rerun.",
        ...cel({ rule: 'self == oldSelf', message: 'resumeFrom is immutable' }),
      }),
    ),
    modelRef: Type.Optional(
      object(
        {
          name: dnsLabel('Registered model name.'),
          stage: Type.Optional(enumOf(['Staging', 'Production'] as const)),
          version: Type.Optional(Type.Integer({ minimum: 1 })),
          alias: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
        },
        cel(
          { rule: '(has(self.stage) ? 1 : 0) + (has(self.version) ? 1 : 0) + (has(self.alias) ? 1 : 0) == 1', message: 'set exactly one of stage, version or alias' },
          { rule: 'self == oldSelf', message: 'modelRef is immutable' },
        ),
      ),
    ),
    cachePolicy: Type.Optional(enumOf(['Enabled', 'Disabled'] as const, { description: 'Disabled reruns every step of this run.' })),
    podMetadata: Type.Optional(
      podMetadataSchema(
        "Labels and annotations for this run's step Pods, over the Pipeline's podMetadata (Ferry's own labels still win).",
        { rule: 'self == oldSelf', message: 'podMetadata is immutable' },
      ),
    ),
    failurePolicy: Type.Optional(enumOf(FAILURE_POLICIES, { description: "Overrides the Pipeline's failurePolicy." })),
    cancel: Type.Optional(Type.Boolean({ description: 'Set to true to stop the run; running steps are deleted.' })),
  },
  cel(
    {
      rule: '!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)',
      message: 'a cancelled run cannot be resumed',
      fieldPath: '.cancel',
    },
    {
      rule: '(has(self.pipelineRef) ? 1 : 0) + (has(self.reproduceFrom) ? 1 : 0) + (has(self.resumeFrom) ? 1 : 0) + (has(self.modelRef) ? 1 : 0) == 1',
      message: 'set exactly one of pipelineRef, reproduceFrom, resumeFrom or modelRef',
    },
  ),
);

export const StepStatusSchema = object({
  name: dnsLabel('Step name.'),
  phase: enumOf(STEP_PHASES),
  attempts: Type.Optional(Type.Integer({ minimum: 0, description: 'Attempts started so far.' })),
  podName: Type.Optional(Type.String({ maxLength: 253, description: 'Pod of the latest attempt.' })),
  startedAt: Type.Optional(timestamp('When the first attempt started.')),
  finishedAt: Type.Optional(timestamp('When the latest attempt finished.')),
  retryAt: Type.Optional(timestamp('When the next attempt starts (phase Retrying).')),
  reason: Type.Optional(Type.String({ maxLength: 128 })),
  message: Type.Optional(Type.String({ maxLength: 1024 })),
  cause: Type.Optional(
    enumOf(['Error', 'OOMKilled', 'Evicted', 'Preempted', 'NodeLost', 'ImagePullFailed', 'Unschedulable', 'DeadlineExceeded', 'AgentFailed'] as const, {
      description: 'Why the latest attempt failed; with retries.policy it decides whether the step is retried.',
    }),
  ),
  exitCode: Type.Optional(Type.Integer({ minimum: -2147483648, maximum: 2147483647, description: "Exit code of the latest failed attempt's container." })),
  infrastructureRetries: Type.Optional(
    Type.Integer({ minimum: 0, description: 'Attempts retried after an infrastructure loss (Evicted, Preempted, NodeLost); they do not use retries.limit.' }),
  ),
  outputs: Type.Optional(
    namedList(
      object({
        name: Type.String({ maxLength: 63 }),
        uri: Type.String({ maxLength: 2048 }),
        digest: Type.String({ maxLength: 71 }),
        size: Type.Optional(Type.Integer({ minimum: 0 })),
      }),
      32,
      'Artifacts the step published (content-addressed).',
    ),
  ),
  metrics: Type.Optional(mapOf(Type.Number(), { maxProperties: 64, description: "Numbers from the step's metrics.json." })),
  cacheKey: Type.Optional(Type.String({ maxLength: 71, description: 'sha256 of what determines the outputs (image, command, parameters, inputs).' })),
  cachedFrom: Type.Optional(Type.String({ maxLength: 253, description: 'The run whose outputs this step reused.' })),
  models: Type.Optional(
    Type.Array(object({ name: Type.String({ maxLength: 63 }), version: Type.Integer({ minimum: 1 }) }), {
      maxItems: 8, description: 'ModelVersions this step registered (name-v<version>).',
    }),
  ),
  results: Type.Optional(
    mapOf(Type.String({ maxLength: RESULT_MAX_BYTES }), { maxProperties: MAX_RESULTS, description: 'Results the step wrote, as canonical text (JSON for json results).' }),
  ),
  items: Type.Optional(
    object(
      {
        total: Type.Integer({ minimum: 0 }),
        pending: Type.Integer({ minimum: 0 }),
        running: Type.Integer({ minimum: 0 }),
        succeeded: Type.Integer({ minimum: 0 }),
        failed: Type.Integer({ minimum: 0 }),
      },
      { description: 'Counts of a forEach step\'s items (never an entry per item: status stays small).' },
    ),
  ),
  failedItems: Type.Optional(
    Type.Array(
      object({ index: Type.Integer({ minimum: 0 }), reason: Type.String({ maxLength: 128 }), message: Type.String({ maxLength: 256 }) }),
      { maxItems: 10, description: 'The first failed items of a forEach step.' },
    ),
  ),
  collection: Type.Optional(
    object(
      { uri: Type.String({ maxLength: 2048 }), digest: Type.String({ maxLength: 71 }), size: Type.Integer({ minimum: 0 }) },
      { description: "A forEach step's items: their outputs and results, one JSON document in the artifact store." },
    ),
  ),
});

export const PipelineRunStatusSchema = object({
  phase: Type.Optional(enumOf(RUN_PHASES)),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(ConditionsSchema),
  startedAt: Type.Optional(timestamp('When the first step started.')),
  finishedAt: Type.Optional(timestamp('When the run reached a final phase.')),
  progress: Type.Optional(Type.String({ maxLength: 16, description: 'Finished steps / all steps, e.g. 3/5.' })),
  configuration: Type.Optional(
    object(
      {
        uri: Type.String({ maxLength: 2048 }),
        digest: Type.String({ maxLength: 71 }),
      },
      { description: 'The frozen PipelineConfiguration of this run, written once before its first step.' },
    ),
  ),
  pipeline: Type.Optional(
    object({
      name: Type.String({ maxLength: 253 }),
      generation: Type.Integer({ minimum: 0 }),
      specHash: Type.String({ maxLength: 80 }),
    }),
  ),
  parameters: Type.Optional(
    namedList(
      object({ name: Type.String({ maxLength: 63 }), value: Type.String({ maxLength: PARAMETER_VALUE_MAX_LENGTH }), source: enumOf(['run', 'default'] as const) }),
      MAX_PARAMETERS,
      'Resolved parameter values and where each came from.',
    ),
  ),
  steps: Type.Optional(namedList(StepStatusSchema, MAX_STEPS + MAX_FINALLY_STEPS, 'One entry per declared step, then one per finally step.')),
  outcome: Type.Optional(
    object(
      {
        phase: enumOf(['Succeeded', 'Failed', 'Cancelled'] as const),
        reason: Type.String({ maxLength: 128 }),
        message: Type.String({ maxLength: 4096 }),
      },
      { description: "How the run's main steps ended; set while its finally steps run." },
    ),
  ),
  metadataRecorded: Type.Optional(Type.String({ maxLength: 100, description: 'Phase and digest of what was last recorded in the metadata store.' })),
});

export type RunParameter = Static<typeof RunParameterSchema>;
export type PipelineRunSpec = Static<typeof PipelineRunSpecSchema>;
export type StepStatus = Static<typeof StepStatusSchema>;
export type PipelineRunStatus = Static<typeof PipelineRunStatusSchema>;
export type ResolvedParameter = NonNullable<PipelineRunStatus['parameters']>[number];
export type StepOutput = NonNullable<StepStatus['outputs']>[number];

export interface PipelineRun extends KubeObject {
  spec: PipelineRunSpec;
  status?: PipelineRunStatus;
}
