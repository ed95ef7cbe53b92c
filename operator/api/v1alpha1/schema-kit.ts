// Small builders for structural (CRD-compatible) OpenAPI schemas on top of TypeBox.
// The CRDs in crds/ are generated from these schemas and the TypeScript types are
// inferred from the same objects, so the API has one source of truth.
import { Type, type Static, type TSchema, type TUnsafe, type ObjectOptions } from '@sinclair/typebox';

export { Type, type Static, type TSchema };

/** A CEL rule for `x-kubernetes-validations`. */
export interface CelRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

export function cel(...rules: CelRule[]): { 'x-kubernetes-validations': CelRule[] } {
  return { 'x-kubernetes-validations': rules };
}

/** A string restricted to the given values; TypeBox's union of literals is not structural. */
export function enumOf<const T extends readonly string[]>(
  values: T,
  options: { description?: string; default?: T[number] } = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A map from string keys to values of one schema (`additionalProperties`). */
export function mapOf<T extends TSchema>(
  values: T,
  options: { description?: string; maxProperties?: number } = {},
): TUnsafe<Record<string, Static<T>>> {
  return Type.Unsafe<Record<string, Static<T>>>({ type: 'object', additionalProperties: values, ...options });
}

/** A Kubernetes quantity such as `500m`, `2Gi` or `4`. */
export function quantity(): TUnsafe<string | number> {
  return Type.Unsafe<string | number>({
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    pattern: '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$',
  });
}

/** A scalar of any JSON type (a parameter value): checked by CEL and by the operator. */
export function scalar(description: string): TUnsafe<string | number | boolean> {
  return Type.Unsafe<string | number | boolean>({ 'x-kubernetes-preserve-unknown-fields': true, description });
}

/** An object whose list fields are keyed by `name` (server-side apply merges them by key). */
export function namedList<T extends TSchema>(items: T, maxItems: number, description: string, minItems = 0) {
  return Type.Array(items, {
    ...(minItems > 0 ? { minItems } : {}),
    maxItems,
    description,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['name'],
  });
}

/** A list of unique strings. */
export function stringSet(maxItems: number, itemMaxLength: number, description: string) {
  return Type.Array(Type.String({ maxLength: itemMaxLength }), {
    maxItems,
    description,
    'x-kubernetes-list-type': 'set',
  });
}

export function object<T extends Parameters<typeof Type.Object>[0]>(properties: T, options: ObjectOptions = {}) {
  return Type.Object(properties, options);
}

export const dnsLabel = (description: string, extra: object = {}) =>
  Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', description, ...extra });

export const timestamp = (description: string) => Type.String({ format: 'date-time', maxLength: 64, description });
