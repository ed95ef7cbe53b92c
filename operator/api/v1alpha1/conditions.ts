// Condition types and reasons (one table), and setCondition, which moves
// lastTransitionTime only when the status flips.
import type { Condition } from './common.ts';

export const CONDITION_READY = 'Ready';
export const CONDITION_SUCCEEDED = 'Succeeded';
/** On a run that registers models: Unknown once versions are reserved, True once they exist, False while one is refused. */
export const CONDITION_MODELS_REGISTERED = 'ModelsRegistered';

export const Reasons = {
  // Pipeline Ready
  Valid: 'Valid',
  UnknownDependency: 'UnknownDependency',
  DependencyCycle: 'DependencyCycle',
  InvalidInput: 'InvalidInput',
  UnknownParameter: 'UnknownParameter',
  InvalidDefault: 'InvalidDefault',
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
  /** A step's nodeSelector or toleration uses a key the admin does not allow. */
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
  RegistrationFailed: Reasons.RegistrationFailed,
  StageChanged: 'StageChanged',
  Archived: 'Archived',
  AliasMoved: 'AliasMoved',
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
