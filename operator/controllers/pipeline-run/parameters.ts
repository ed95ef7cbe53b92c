// Parameter resolution for a run: pipeline defaults plus the run's values, each checked
// against its declared type. Values are kept as canonical strings ("3", "0.25", "true").
import { PARAMETER_VALUE_MAX_LENGTH, type ResolvedParameter, type RunParameter } from '../../api/v1alpha1/pipeline-run.ts';
import type { ParameterSpec, ParameterType } from '../../api/v1alpha1/pipeline.ts';
import { canonicalJson } from '../../configuration/canonical-json.ts';
import { escapeForKubelet, substitute } from './variables.ts';

export type Coerced = { value: string } | { error: string };

/** A value as an error message shows it: quoted, and cut short (a message has a bound too). */
const describe = (v: unknown) => {
  const text = typeof v === 'string' ? v : String(v);
  const shown = text.length > 64 ? `${text.slice(0, 63)}…` : text;
  return typeof v === 'string' ? `"${shown}"` : shown;
};

/**
 * A value of the type, in canonical text, at most PARAMETER_VALUE_MAX_LENGTH characters (what
 * status holds): checked before and after, since canonical JSON can be longer than what was given.
 */
export function coerceParameter(type: ParameterType, raw: unknown): Coerced {
  const coerced = coerce(type, raw);
  if ('value' in coerced && coerced.value.length > PARAMETER_VALUE_MAX_LENGTH) {
    return { error: `the value is ${coerced.value.length} characters as canonical text, more than the ${PARAMETER_VALUE_MAX_LENGTH} a run's status can hold` };
  }
  return coerced;
}

function coerce(type: ParameterType, raw: unknown): Coerced {
  if (typeof raw === 'string' && raw.length > PARAMETER_VALUE_MAX_LENGTH) {
    return { error: `the value is ${raw.length} characters, more than the ${PARAMETER_VALUE_MAX_LENGTH} a run's status can hold` };
  }
  if (typeof raw === 'object' && raw !== null) return { error: 'the value is not a string, number or boolean' };
  switch (type) {
    case 'string':
      return typeof raw === 'string' ? { value: raw } : { error: `${describe(raw)} is not a string (quote it)` };
    case 'int': {
      const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
      return /^-?\d+$/.test(text) && Number.isSafeInteger(Number(text))
        ? { value: String(Number(text)) }
        : { error: `${describe(raw)} is not an integer` };
    }
    case 'float': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      return Number.isFinite(n) ? { value: String(n) } : { error: `${describe(raw)} is not a number` };
    }
    case 'bool':
      if (raw === true || raw === 'true') return { value: 'true' };
      if (raw === false || raw === 'false') return { value: 'false' };
      return { error: `${describe(raw)} is not a boolean (true or false)` };
    case 'json': {
      // A number or boolean is JSON already; a string must parse. Kept as canonical JSON text.
      if (typeof raw !== 'string') return { value: canonicalJson(raw) };
      try {
        return { value: canonicalJson(JSON.parse(raw) as unknown) };
      } catch {
        return { error: `${describe(raw)} is not JSON` };
      }
    }
  }
}

export type Resolution = { parameters: ResolvedParameter[] } | { error: string };

export function resolveParameters(declared: ParameterSpec[], given: RunParameter[]): Resolution {
  const byName = new Map(declared.map((p) => [p.name, p]));
  const problems: string[] = [];
  for (const g of given) {
    if (!byName.has(g.name)) problems.push(`unknown parameter "${g.name}"`);
  }
  const values = new Map(given.map((g) => [g.name, g.value]));
  const parameters: ResolvedParameter[] = [];
  for (const p of declared) {
    const fromRun = values.has(p.name);
    const raw = fromRun ? values.get(p.name) : p.default;
    if (raw === undefined) {
      problems.push(`parameter "${p.name}" is required`);
      continue;
    }
    const coerced = coerceParameter(p.type ?? 'string', raw);
    if ('error' in coerced) problems.push(`parameter "${p.name}" (${p.type ?? 'string'}): ${coerced.error}`);
    else parameters.push({ name: p.name, value: coerced.value, source: fromRun ? 'run' : 'default' });
  }
  return problems.length > 0 ? { error: problems.join('; ') } : { parameters };
}

/** FERRY_PARAM_<NAME>: upper case, with - turned into _. */
export const parameterEnvName = (name: string) => `FERRY_PARAM_${name.toUpperCase().replace(/-/g, '_')}`;

/** Replaces $(params.<name>) with the resolved value (variables.ts has every kind of variable). */
export const substituteParameters = (text: string, values: Map<string, string>): string => substitute(text, { params: values });

export { escapeForKubelet };
