// The $(…) variables a step's command, args and env values may use (pure):
//   $(params.<name>)              a pipeline parameter
//   $(steps.<step>.results.<name>) an upstream step's result (a JSON list for a forEach step)
//   $(item), $(item.<field>)      the item of a forEach step (objects and lists as JSON)
//   $(run.status), $(run.failedSteps)  in finally steps: how the main steps ended
// A reference to something that does not exist stays as written (validation refuses it for
// the Pipeline, so only a run-time value such as a missing item field can get there).
import { canonicalJson } from '../../configuration/canonical-json.ts';

const NAME = '[a-zA-Z_][a-zA-Z0-9_-]*';
const STEP = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const VARIABLE = new RegExp(`\\$\\((params\\.${NAME}|steps\\.${STEP}\\.results\\.${NAME}|item(?:\\.${NAME})?|run\\.(?:status|failedSteps))\\)`, 'g');

export interface StepVariables {
  params: Map<string, string>;
  /** `<step>.<result>` → its text. */
  results?: Map<string, string>;
  item?: { value: unknown; index: number };
  run?: { status: string; failedSteps: string[] };
}

/** What a text refers to, for validation and for the cache key. */
export interface References {
  params: string[];
  results: Array<{ step: string; name: string }>;
  /** `$(item)` is '', `$(item.x)` is 'x'. */
  item: string[];
  run: string[];
}

export function referencesIn(texts: string[]): References {
  const refs: References = { params: [], results: [], item: [], run: [] };
  for (const text of texts) {
    for (const [, path] of text.matchAll(VARIABLE)) {
      const parts = path!.split('.');
      if (parts[0] === 'params') refs.params.push(parts[1]!);
      else if (parts[0] === 'steps') refs.results.push({ step: parts[1]!, name: parts[3]! });
      else if (parts[0] === 'item') refs.item.push(parts[1] ?? '');
      else refs.run.push(parts[1]!);
    }
  }
  return refs;
}

/** An item as a variable shows it: a string as it is, anything else as canonical JSON. */
export const itemText = (value: unknown): string => (typeof value === 'string' ? value : canonicalJson(value));

/** The value a variable path stands for, or undefined when there is none. */
function valueOf(path: string, vars: StepVariables): string | undefined {
  const parts = path.split('.');
  switch (parts[0]) {
    case 'params':
      return vars.params.get(parts[1]!);
    case 'steps':
      return vars.results?.get(`${parts[1]}.${parts[3]}`);
    case 'item': {
      if (!vars.item) return undefined;
      if (parts.length === 1) return itemText(vars.item.value);
      const value = vars.item.value;
      const field = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)[parts[1]!] : undefined;
      return field === undefined ? undefined : itemText(field);
    }
    case 'run':
      if (!vars.run) return undefined;
      return parts[1] === 'status' ? vars.run.status : vars.run.failedSteps.join(',');
    default:
      return undefined;
  }
}

/**
 * Replaces every variable with its value, escaped for the kubelet, which would otherwise expand
 * a `$(VAR)` inside it. NOTE: a value is data, never a reference to another variable (that could
 * copy a Secret-backed variable into args).
 */
export function substitute(text: string, vars: StepVariables): string {
  return text.replace(VARIABLE, (whole, path: string) => {
    const value = valueOf(path, vars);
    return value === undefined ? whole : escapeForKubelet(value);
  });
}

/**
 * A value the kubelet passes through as written: it expands `$(VAR)` in command, args and env
 * values, and reads `$$(` as a literal `$(`.
 */
export const escapeForKubelet = (value: string) => value.replaceAll('$(', () => '$$(');
