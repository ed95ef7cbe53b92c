// Label and annotation keys Ferry sets on the objects it creates: one home for all of them.
export const LABEL_RUN = 'ferry.dev/run';
export const LABEL_STEP = 'ferry.dev/step';
export const LABEL_PIPELINE = 'ferry.dev/pipeline';
export const LABEL_ATTEMPT = 'ferry.dev/attempt';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'ferry';

/** Selects every Pod Ferry created (the Pod informer holds only these). */
export const MANAGED_POD_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export const FINAL_RUN_PHASES = new Set(['Succeeded', 'Failed', 'Cancelled']);
