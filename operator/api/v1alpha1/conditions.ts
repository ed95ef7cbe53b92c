// Condition types and reasons (one table), and setCondition, which moves
// lastTransitionTime only when the status flips.
import type { Condition } from './common.ts';

export const CONDITION_READY = 'Ready';
export const CONDITION_SUCCEEDED = 'Succeeded';
/** On a run that registers models: Unknown once versions are reserved, True once they exist, False while one is refused. */
export const CONDITION_MODELS_REGISTERED = 'ModelsRegistered';

/** On a Pipeline with an endpoint, and on the ModelVersions it serves or tried to: what is served. */
export const CONDITION_SERVING = 'Serving';

export const Reasons = {
  // Pipeline Ready
  Valid: 'Valid',
  UnknownDependency: 'UnknownDependency',
  DependencyCycle: 'DependencyCycle',
  InvalidInput: 'InvalidInput',
  UnknownParameter: 'UnknownParameter',
  InvalidDefault: 'InvalidDefault',
  /** A step's volumeMounts name a volume the step does not declare. */
  UnknownVolume: 'UnknownVolume',
  /** A step volume with a name of Ferry's, or not exactly one source. */
  InvalidVolume: 'InvalidVolume',
  /** A mount path that is not absolute and normalised, is / or /ferry, or is under /ferry or the token's directory. */
  InvalidVolumeMount: 'InvalidVolumeMount',
  /** podMetadata with an invalid key or value, or a key of Ferry's, Kubernetes' or a container runtime's. */
  InvalidPodMetadata: 'InvalidPodMetadata',
  /** A step's `when` does not compile, is not a bool, or uses what it cannot see. */
  InvalidCondition: 'InvalidCondition',
  /** $(steps.x.results.y) of a step that is not upstream, or a result it does not declare. */
  InvalidResultReference: 'InvalidResultReference',
  InvalidForEach: 'InvalidForEach',
  InvalidFinally: 'InvalidFinally',
  /** Two steps whose Pods could have the same name (`a-1` next to a forEach step `a`). */
  StepNameConflict: 'StepNameConflict',
  /** The endpoint's image reference does not parse, or its env sets a variable of the serving contract. */
  InvalidServing: 'InvalidServing',
  /** A schedule's cron, time zone or parameters are wrong, or its run names would be too long. */
  InvalidSchedule: 'InvalidSchedule',
  // PipelineRun Succeeded
  Pending: 'Pending',
  PipelineNotFound: 'PipelineNotFound',
  Running: 'Running',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  TimedOut: 'TimedOut',
  Cancelled: 'Cancelled',
  InvalidPipeline: 'InvalidPipeline',
  InvalidParameters: 'InvalidParameters',
  ImageNotPinned: 'ImageNotPinned',
  /** A step's nodeSelector, affinity or toleration key, priority class or runtime class is one the admin does not allow. */
  PlacementNotAllowed: 'PlacementNotAllowed',
  ImageResolutionFailed: 'ImageResolutionFailed',
  /** The run's images are being resolved in the background (a slow registry). */
  ResolvingImages: 'ResolvingImages',
  ConfigurationTampered: 'ConfigurationTampered',
  ConfigurationMissing: 'ConfigurationMissing',
  ConfigurationConflict: 'ConfigurationConflict',
  ConfigurationDigestMismatch: 'ConfigurationDigestMismatch',
  ReproductionSourceNotFound: 'ReproductionSourceNotFound',
  ReproductionSourceTooLarge: 'ReproductionSourceTooLarge',
  /** A URI the user gave names no object of the run's own namespace. */
  CrossNamespaceReference: 'CrossNamespaceReference',
  MissingOutput: 'MissingOutput',
  /** A succeeded step's report names objects outside its namespace, or is too large or malformed. */
  InvalidStepReport: 'InvalidStepReport',
  /** The API server refused the run's status (too large, or invalid): the run was stopped with a minimal status. */
  StatusRefused: 'StatusRefused',
  ModelNotFound: 'ModelNotFound',
  ModelNotBound: 'ModelNotBound',
  ArtifactNotFound: 'ArtifactNotFound',
  // PipelineRun ModelsRegistered
  Registering: 'Registering',
  Registered: 'Registered',
  RegistrationFailed: 'RegistrationFailed',
  // Step reasons
  PodRejected: 'PodRejected',
  PodDeleted: 'PodDeleted',
  Error: 'Error',
  /** A Pending step whose identical twin runs in another run right now. */
  WaitingForCache: 'WaitingForCache',
  /** Skipped: the step's `when` is false. */
  ConditionFalse: 'ConditionFalse',
  /** Failed: the step's `when` could not be evaluated (a missing key, say). */
  ConditionError: 'ConditionError',
  /** Skipped: a step it uses was skipped. */
  UpstreamSkipped: 'UpstreamSkipped',
  /** Skipped: a step it depends on failed (failurePolicy Continue). */
  UpstreamFailed: 'UpstreamFailed',
  /** A declared result is missing or does not fit its type. */
  InvalidResult: 'InvalidResult',
  /** More of a forEach step's items failed than its minSuccessRatio allows. */
  ItemsFailed: 'ItemsFailed',
  /** A forEach step's items wrote more than a collection may hold. */
  CollectionTooLarge: 'CollectionTooLarge',
  /** The main steps ended; the finally steps run. */
  RunningFinally: 'RunningFinally',
  /** The main steps succeeded, a finally step failed. */
  FinallyFailed: 'FinallyFailed',
  // Step reasons of failure causes (pod-status.ts REASON_OF_CAUSE)
  OOMKilled: 'OOMKilled',
  Evicted: 'Evicted',
  Preempted: 'Preempted',
  NodeLost: 'NodeLost',
  ImagePullFailed: 'ImagePullFailed',
  Unschedulable: 'Unschedulable',
  // Serving (Pipeline and ModelVersion)
  /** The endpoint answers with this version. */
  Live: 'Live',
  RollingOut: 'RollingOut',
  /** A version (or server spec) did not become ready in time; the endpoint went back to what it served. */
  RolloutFailed: 'RolloutFailed',
  /** No version fits the endpoint's model reference: nothing is served (scaled to zero). */
  NoServableVersion: 'NoServableVersion',
  /** A Deployment or Service of the endpoint's name exists and is not the endpoint's. */
  EndpointConflict: 'EndpointConflict',
  /** Another version took over at the endpoint. */
  Replaced: 'Replaced',
  /** The endpoint serves nothing now. */
  Stopped: 'Stopped',
} as const;

/** Reasons of the Events Ferry emits (a step's or run's transition, a model's stage). */
export const EventReasons = {
  StepStarted: 'StepStarted',
  StepSucceeded: 'StepSucceeded',
  StepCached: 'StepCached',
  StepRetrying: 'StepRetrying',
  StepFailed: 'StepFailed',
  RunSucceeded: 'RunSucceeded',
  RunFailed: 'RunFailed',
  RunCancelled: 'RunCancelled',
  /** The main steps ended; the finally steps start. */
  RunningFinally: 'RunningFinally',
  RegistrationFailed: Reasons.RegistrationFailed,
  StageChanged: 'StageChanged',
  Archived: 'Archived',
  AliasMoved: 'AliasMoved',
  RolloutStarted: 'RolloutStarted',
  RolloutSucceeded: 'RolloutSucceeded',
  RolloutFailed: Reasons.RolloutFailed,
  ScaledToZero: 'ScaledToZero',
  ScheduledRunStarted: 'ScheduledRunStarted',
  /** A scheduled time not run: Forbid while the last run still runs, or missed while the operator was down. */
  ScheduleSkipped: 'ScheduleSkipped',
} as const;

export function setCondition(
  conditions: Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition[] {
  const list = conditions ?? [];
  const current = list.find((c) => c.type === next.type);
  const lastTransitionTime =
    current && current.status === next.status ? current.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const updated: Condition = { ...next, lastTransitionTime };
  return current ? list.map((c) => (c.type === next.type ? updated : c)) : [...list, updated];
}

export const findCondition = (conditions: Condition[] | undefined, type: string): Condition | undefined =>
  conditions?.find((c) => c.type === type);
