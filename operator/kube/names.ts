// Deterministic names for the objects Ferry creates: the same inputs always give the same
// name, so "AlreadyExists" means "already done". Names that would be too long keep a
// readable prefix and end in a hash of the full name.
import { sha256Hex } from '../configuration/canonical-json.ts';

export const MAX_LABEL_VALUE = 63;

export function shortenName(name: string, max = MAX_LABEL_VALUE): string {
  if (name.length <= max) return name;
  const hash = sha256Hex(name).slice(0, 10);
  const prefix = name.slice(0, max - hash.length - 1).replace(/[-.]+$/, '');
  return `${prefix}-${hash}`;
}

/** `<run>-<step>-<attempt>`, at most 63 characters (the Pod's hostname is its name). */
export const stepPodName = (run: string, step: string, attempt: number): string =>
  shortenName(`${run}-${step}-${attempt}`);

/** A label value for any object name (names may be longer than label values). */
export const labelValue = (name: string): string => shortenName(name);
