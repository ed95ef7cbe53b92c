// Label and annotation keys Ferry sets on the objects it creates: one home for all of them.
export const LABEL_RUN = 'ferry.dev/run';
export const LABEL_STEP = 'ferry.dev/step';
export const LABEL_PIPELINE = 'ferry.dev/pipeline';
export const LABEL_ATTEMPT = 'ferry.dev/attempt';
/** The index of a forEach step's item, on its Pods. */
export const LABEL_ITEM = 'ferry.dev/item';
/** On a ModelVersion: the registered model it is a version of. */
export const LABEL_MODEL = 'ferry.dev/model';
/** On a ModelVersion: the uid of the run that registered it (a reservation is adopted by it). */
export const LABEL_RUN_UID = 'ferry.dev/run-uid';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'ferry';

/** On an endpoint's Deployment, Service and Pods: the endpoint (its Pipeline's name, shortened). */
export const LABEL_ENDPOINT = 'ferry.dev/endpoint';
/** On a run a schedule started: the schedule's name (its Pipeline is in ferry.dev/pipeline). */
export const LABEL_SCHEDULE = 'ferry.dev/schedule';

/** Selects every step Pod Ferry created (the Pod informer holds only these; an endpoint's Pods are the Deployment's). */
export const MANAGED_POD_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_STEP}`;
/** Selects the Deployments and Services of Ferry's endpoints. */
export const ENDPOINT_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_ENDPOINT}`;
/** On an endpoint's Pod template: what it serves (a hash of the serving spec and the model version). */
export const ANNOTATION_SERVING_INTENT = 'ferry.dev/serving-intent';
/** On an endpoint's Pod template: the ModelVersion it serves. */
export const ANNOTATION_MODEL_VERSION = 'ferry.dev/model-version';
/** On an endpoint's Pod template: when its signed model URL expires (the endpoint is rolled before). */
export const ANNOTATION_GRANT_EXPIRES_AT = 'ferry.dev/model-url-expires-at';
/** On an endpoint's Deployment: when the rollout of its current template began. */
export const ANNOTATION_ROLLOUT_STARTED_AT = 'ferry.dev/rollout-started-at';
/** On a run a schedule started: the scheduled time it is for (RFC 3339). */
export const ANNOTATION_SCHEDULED_AT = 'ferry.dev/scheduled-at';

/** On a ModelVersion: who set spec.stage last when Ferry did, and why (shown in the stage history). */
export const ANNOTATION_STAGE_BY = 'ferry.dev/stage-changed-by';
export const ANNOTATION_STAGE_REASON = 'ferry.dev/stage-reason';
/** On a step Pod: `kubectl logs <pod>` shows the user's step (an init container) without `-c step`. */
export const ANNOTATION_DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';
/** Prefix of every label and annotation key Ferry owns; podMetadata may not use it. */
export const FERRY_KEY_PREFIX = 'ferry.dev/';

export const FINAL_RUN_PHASES = new Set(['Succeeded', 'Failed', 'Cancelled']);
