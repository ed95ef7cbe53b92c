// The Pod type as Ferry reads and writes it: kubernetes-models' plain-JSON Pod with the
// metadata Ferry always sets.
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { KubeObject } from '../api/v1alpha1/common.ts';

export type Pod = IPod & KubeObject;
