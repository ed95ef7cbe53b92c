// A step's results (pure): the text of each /ferry/results/<name> file the agent reported,
// checked against the declared type and kept as canonical text (what status holds and later
// steps substitute), and the typed values conditions compute with.
import type { ParameterType, ResultSpec } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter } from './parameters.ts';

/** Checks every declared result of a report: the canonical texts, or a message naming the first bad one. */
export function checkResults(declared: ResultSpec[] | undefined, reported: Record<string, string> | undefined): { results: Record<string, string> } | { error: string } {
  const results: Record<string, string> = {};
  for (const spec of declared ?? []) {
    const text = reported?.[spec.name];
    if (text === undefined) return { error: `result "${spec.name}" was not written to /ferry/results/${spec.name}` };
    const type = spec.type ?? 'string';
    const coerced = coerceParameter(type, type === 'string' || type === 'json' ? text : text.trim());
    if ('error' in coerced) return { error: `result "${spec.name}" (${type}): ${coerced.error}` };
    results[spec.name] = coerced.value;
  }
  return { results };
}

/** A canonical text as the JSON value of its type: a number, a boolean, a string or any JSON value. */
export function resultValue(type: ParameterType, text: string): unknown {
  switch (type) {
    case 'int':
    case 'float':
      return Number(text);
    case 'bool':
      return text === 'true';
    case 'json':
      return JSON.parse(text) as unknown;
    case 'string':
      return text;
  }
}
