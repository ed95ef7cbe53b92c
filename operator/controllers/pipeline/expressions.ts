// Step conditions (`when:`): compiles, type-checks and evaluates CEL expressions over the run's
// parameters and the results of upstream steps. Pure: the Pipeline validator checks a condition
// against declared types, the PipelineRun planner evaluates it against the stored values.
//
// The environment has two variables, each registered with a typed schema (a CEL object type with
// one typed field per name), so `params.epochs > 3` and `params["learning-rate"] < 0.1` are both
// checked against the declared type; map-style access is how names with a `-` are reached.
//   params : { <param>: T }                      T: string | int | double | bool | dyn (json)
//   steps  : { <step>: { results: { <result>: T | list<T> } } }    list<T> for fan-out steps
import {
  Environment,
  EvaluationError,
  ParseError,
  TypeError as CelTypeError,
  type ASTNode,
  type ObjectSchema,
  type ParseResult,
} from '@marcbachmann/cel-js';

export type ValueType = 'string' | 'int' | 'float' | 'bool' | 'json';
export interface DeclaredValue {
  type: ValueType;
  list?: boolean;
}
export interface ExpressionEnvironment {
  params: Map<string, DeclaredValue>;
  /** step name → result name → type, only for steps the expression may see (upstream ones). */
  results: Map<string, Map<string, DeclaredValue>>;
}
export interface ConditionReferences {
  params: string[];
  results: Array<{ step: string; name: string }>;
}
export interface ConditionValues {
  params: Map<string, { type: ValueType; value: string }>;
  results: Map<string, Map<string, { type: ValueType; value: string } | { type: ValueType; list: string[] }>>;
}

/** Matches the CRD's maxLength for `when`. */
const MAX_EXPRESSION_LENGTH = 2048;
const MAX_CACHED_PROGRAMS = 1000;
const MAX_CACHED_ENVIRONMENTS = 200;
// The library has no runtime cost limit, so cost is bounded by the shape of the expression:
// parse limits bound the tree, at most two nested comprehensions bound loops to n² over a
// fan-out list, and few cel.bind()s bound how often a value can double (`cel.bind(a, a + a, …)`).
const PARSE_LIMITS = { maxAstNodes: 1000, maxDepth: 32 };
const MAX_COMPREHENSION_NESTING = 2;
const MAX_BINDS = 3;
const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const CEL_TYPES: Record<ValueType, string> = {
  string: 'string',
  int: 'int',
  float: 'double',
  bool: 'bool',
  json: 'dyn',
};

/** Compiles and type-checks a condition: it must be a bool. Errors name what is wrong and where. */
export function checkCondition(
  expression: string,
  env: ExpressionEnvironment,
): { ok: true; references: ConditionReferences } | { error: string } {
  const compiled = compile(expression, env);
  return 'error' in compiled ? compiled : { ok: true, references: compiled.references };
}

/** Evaluates a checked condition; a runtime error (no such key, division by zero) is an error, never a throw. */
export function evaluateCondition(
  expression: string,
  env: ExpressionEnvironment,
  values: ConditionValues,
): { value: boolean } | { error: string } {
  const compiled = compile(expression, env);
  if ('error' in compiled) return compiled;
  const bound = bindValues(compiled.references, env, values);
  if ('error' in bound) return bound;
  let result: unknown;
  try {
    result = compiled.program(bound.context);
  } catch (err) {
    if (err instanceof EvaluationError) {
      return { error: `evaluation failed at ${position(expression, err.range?.start)}: ${err.summary}` };
    }
    // E.g. a RangeError from a string grown past what V8 allows.
    return { error: `evaluation failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (typeof result !== 'boolean') return { error: `the condition evaluated to ${describeValue(result)}, not a bool` };
  return { value: result };
}

/** The step names a (possibly invalid) expression refers to through steps.<name>, for dependency checks. */
export function referencedSteps(expression: string): string[] {
  if (expression.length > MAX_EXPRESSION_LENGTH) return [];
  let program: ParseResult;
  try {
    program = syntaxOnly().parse(expression);
  } catch {
    return []; // NOTE: no tree, no references; checkCondition reports the syntax error.
  }
  const steps = new Set<string>();
  for (const ref of analyze(program.ast).references) if (ref.kind !== 'param') steps.add(ref.step);
  return [...steps].sort();
}

// ---- compilation -------------------------------------------------------------------------------

type Compiled = { program: ParseResult; references: ConditionReferences } | { error: string };

// NOTE: module-level, but a pure memo: an entry depends only on its key (the expression and the
// declared types), so sharing it between callers changes timing, never results.
const programs = new Map<string, Compiled>();
const environments = new Map<string, Environment>();

function compile(expression: string, env: ExpressionEnvironment): Compiled {
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    return {
      error: `the condition is ${expression.length} characters long; at most ${MAX_EXPRESSION_LENGTH} are allowed`,
    };
  }
  const signature = environmentSignature(env);
  const key = `${signature}\n${expression}`;
  const cached = remember(programs, key);
  if (cached) return cached;
  const compiled = compileUncached(expression, env, signature);
  store(programs, key, compiled, MAX_CACHED_PROGRAMS);
  return compiled;
}

function compileUncached(expression: string, env: ExpressionEnvironment, signature: string): Compiled {
  let celEnv = remember(environments, signature);
  if (!celEnv) {
    celEnv = buildEnvironment(env);
    store(environments, signature, celEnv, MAX_CACHED_ENVIRONMENTS);
  }
  let program: ParseResult;
  try {
    program = celEnv.parse(expression);
  } catch (err) {
    if (err instanceof ParseError) {
      const what = err.code === 'limit_exceeded' ? 'the condition is too complex' : 'syntax error';
      return { error: `${what} at ${position(expression, err.range?.start)}: ${err.summary}` };
    }
    throw err; // not the user's expression: a bug here or in the library
  }

  // Our own pass first: it names unknown parameters, steps and results better than the
  // library's "No such key", and it is what makes `references` exact.
  const analysis = analyze(program.ast);
  if (analysis.problem) {
    const { what, at, hint } = analysis.problem;
    return { error: `${what} at ${position(expression, at)}: ${hint}` };
  }
  const unknown = findUnknownReference(analysis.references, env, expression);
  if (unknown) return { error: unknown };

  const checked = program.check();
  if (!checked.valid) {
    const err = checked.error;
    const where = position(expression, err?.range?.start);
    if (err instanceof CelTypeError && err.code === 'unknown_variable') {
      return {
        error: `${err.summary.replace(/^Unknown variable: (.*)$/, 'unknown variable "$1"')} at ${where}: a condition reads only params.<name> and steps.<step>.results.<name>`,
      };
    }
    if (err instanceof CelTypeError && /overload/.test(err.code)) {
      return { error: `type mismatch at ${where}: ${err.summary}` };
    }
    return { error: `type error at ${where}: ${err?.summary ?? 'unknown error'}` };
  }
  // dyn (e.g. a field of a json parameter) may still be a bool: evaluation checks the value.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { error: `the condition must be a bool, but its type is ${checked.type ?? 'unknown'}` };
  }
  return { program, references: collectReferences(analysis.references) };
}

function buildEnvironment(env: ExpressionEnvironment): Environment {
  const params = schema();
  for (const [name, declared] of env.params) define(params, name, celType(declared));
  const steps = schema();
  for (const [step, results] of env.results) {
    const fields = schema();
    for (const [name, declared] of results) define(fields, name, celType(declared));
    const stepSchema = schema();
    define(stepSchema, 'results', fields);
    define(steps, step, stepSchema);
  }
  return new Environment({ limits: PARSE_LIMITS })
    .registerVariable({ name: 'params', schema: params })
    .registerVariable({ name: 'steps', schema: steps });
}

/** One environment has one compiled form: sorted names with their types. */
function environmentSignature(env: ExpressionEnvironment): string {
  const entries = (m: Map<string, DeclaredValue>) =>
    [...m].map(([n, d]) => [n, celType(d)]).sort((a, b) => compareStrings(a[0]!, b[0]!));
  const results = [...env.results]
    .map(([step, r]) => [step, entries(r)] as const)
    .sort((a, b) => compareStrings(a[0], b[0]));
  return JSON.stringify([entries(env.params), results]);
}

function celType(declared: DeclaredValue): string {
  const t = CEL_TYPES[declared.type];
  return declared.list ? `list<${t}>` : t;
}

// A null-prototype record so a parameter named `__proto__` or `constructor` is just a field.
function schema(): ObjectSchema {
  return Object.create(null) as ObjectSchema;
}
function define(target: ObjectSchema, name: string, value: string | ObjectSchema): void {
  Object.defineProperty(target, name, { value, enumerable: true });
}

// ---- references --------------------------------------------------------------------------------

type Reference =
  | { kind: 'param'; name: string; at: number }
  | { kind: 'step'; step: string; at: number }
  | { kind: 'result'; step: string; name: string; at: number };
interface Analysis {
  references: Reference[];
  /** The first construct we refuse, in source order: what it is, where, and what to write. */
  problem?: { what: string; at: number; hint: string };
}
type Access = Extract<ASTNode, { op: '.' | '.?' | '[]' | '[?]' }>;

/**
 * Walks the tree for references to params and steps, honouring names bound by comprehensions
 * and cel.bind (which shadow the globals). Access must use literal names so the set is exact.
 */
function analyze(root: ASTNode): Analysis {
  const analysis: Analysis = { references: [] };
  let binds = 0;
  const refuse = (what: string, at: number, hint: string) => {
    analysis.problem ??= { what, at, hint };
  };

  const walk = (node: ASTNode, scope: ReadonlySet<string>, loops: number): void => {
    switch (node.op) {
      case 'value':
        return;
      case 'id':
        if (isGlobal(node.args, scope)) {
          const hint = node.args === 'params' ? 'write params.<name>' : 'write steps.<step>.results.<name>';
          refuse(`${node.args} used on its own`, node.start, hint);
        }
        return;
      case '.':
      case '.?':
      case '[]':
      case '[?]':
        return walkAccess(node, scope, loops);
      case 'call':
        if (node.args[0] === 'matches') refuseMatches(node.start);
        for (const arg of node.args[1]) walk(arg, scope, loops);
        return;
      case 'rcall': {
        const [name, target, args] = node.args;
        if (name === 'matches') refuseMatches(node.start);
        const variable = args[0]?.op === 'id' ? args[0].args : undefined;
        if (name === 'bind' && target.op === 'id' && target.args === 'cel' && variable && args.length === 3) {
          if (++binds > MAX_BINDS) refuse(`cel.bind() number ${binds}`, node.start, `at most ${MAX_BINDS} are allowed`);
          walk(args[1]!, scope, loops);
          walk(args[2]!, new Set([...scope, variable]), loops);
          return;
        }
        walk(target, scope, loops);
        if (COMPREHENSIONS.has(name) && variable && args.length >= 2) {
          if (loops + 1 > MAX_COMPREHENSION_NESTING) {
            refuse(
              `${name}() nested ${loops + 1} deep`,
              node.start,
              `at most ${MAX_COMPREHENSION_NESTING} levels of all/exists/exists_one/map/filter are allowed`,
            );
          }
          const inner = new Set([...scope, variable]);
          for (const arg of args.slice(1)) walk(arg, inner, loops + 1);
          return;
        }
        for (const arg of args) walk(arg, scope, loops);
        return;
      }
      case 'list':
        for (const item of node.args) walk(item, scope, loops);
        return;
      case 'map':
        for (const [k, v] of node.args) {
          walk(k, scope, loops);
          walk(v, scope, loops);
        }
        return;
      case '!_':
      case '-_':
        return walk(node.args, scope, loops);
      default:
        // The ternary, && and ||, and the binary operators: all have node operands only.
        for (const operand of node.args) walk(operand, scope, loops);
    }
  };

  // `a.b["c"].d` is a chain of accesses on a root; params and steps need literal names for
  // their first one (params) or three (steps.<step>.results.<name>) levels.
  const walkAccess = (node: Access, scope: ReadonlySet<string>, loops: number): void => {
    const levels: Array<{ key: string | undefined; index: ASTNode | undefined }> = [];
    let base: ASTNode = node;
    while (base.op === '.' || base.op === '.?' || base.op === '[]' || base.op === '[?]') {
      if (base.op === '.' || base.op === '.?') {
        levels.unshift({ key: base.args[1], index: undefined });
      } else {
        const index = base.args[1];
        const literal = index.op === 'value' && typeof index.args === 'string' ? index.args : undefined;
        levels.unshift({ key: literal, index: literal === undefined ? index : undefined });
      }
      base = base.args[0];
    }
    let rest = levels;
    if (base.op === 'id' && isGlobal(base.args, scope)) {
      const at = base.start;
      const [first, second, third] = levels;
      if (base.args === 'params') {
        if (first?.key === undefined) refuse('a computed parameter name', at, 'write params.<name> or params["<name>"]');
        else analysis.references.push({ kind: 'param', name: first.key, at });
        rest = levels.slice(1);
      } else if (first?.key === undefined) {
        refuse('a computed step name', at, 'write steps.<step> or steps["<step>"]');
        rest = levels.slice(1);
      } else {
        const step = first.key;
        analysis.references.push({ kind: 'step', step, at });
        if (second?.key !== 'results') {
          refuse(`steps.${step} without .results.<name>`, at, `write steps.${step}.results.<name>`);
          rest = levels.slice(1);
        } else if (third?.key === undefined) {
          refuse(`steps.${step}.results without a literal result name`, at, `write steps.${step}.results.<name>`);
          rest = levels.slice(2);
        } else {
          analysis.references.push({ kind: 'result', step, name: third.key, at });
          rest = levels.slice(3);
        }
      }
    } else {
      walk(base, scope, loops);
    }
    for (const level of rest) if (level.index) walk(level.index, scope, loops);
  };

  // The library runs matches() on JavaScript's RegExp, not RE2: one pattern such as (a+)+$ can
  // backtrack for minutes and would stall every reconcile sharing the event loop.
  const refuseMatches = (at: number) =>
    refuse('matches()', at, 'regular expressions are not available in conditions; use contains, startsWith or endsWith');

  walk(root, new Set(), 0);
  return analysis;
}

function isGlobal(name: string, scope: ReadonlySet<string>): boolean {
  return (name === 'params' || name === 'steps') && !scope.has(name);
}

function findUnknownReference(refs: Reference[], env: ExpressionEnvironment, expression: string): string | undefined {
  for (const ref of refs) {
    const at = position(expression, ref.at);
    if (ref.kind === 'param' && !env.params.has(ref.name)) {
      return `unknown parameter "${ref.name}" at ${at} (${listOf('declared', [...env.params.keys()])})`;
    }
    if (ref.kind === 'step' && !env.results.has(ref.step)) {
      return `unknown step "${ref.step}" at ${at}: only upstream steps can be read (${listOf('upstream', [...env.results.keys()])})`;
    }
    const results = ref.kind === 'result' ? env.results.get(ref.step) : undefined;
    if (ref.kind === 'result' && results && !results.has(ref.name)) {
      return `unknown result "${ref.name}" of step "${ref.step}" at ${at} (${listOf('declared', [...results.keys()])})`;
    }
  }
  return undefined;
}

function collectReferences(refs: Reference[]): ConditionReferences {
  const params = new Set<string>();
  const results = new Map<string, { step: string; name: string }>();
  for (const ref of refs) {
    if (ref.kind === 'param') params.add(ref.name);
    if (ref.kind === 'result') results.set(JSON.stringify([ref.step, ref.name]), { step: ref.step, name: ref.name });
  }
  return {
    params: [...params].sort(compareStrings),
    results: [...results.values()].sort((a, b) => compareStrings(a.step, b.step) || compareStrings(a.name, b.name)),
  };
}

// ---- values ------------------------------------------------------------------------------------

/** What the library accepts as input; Maps rather than objects, so keys never meet a prototype. */
type CelValue = string | bigint | number | boolean | null | CelValue[] | Map<string, CelValue>;

function bindValues(
  refs: ConditionReferences,
  env: ExpressionEnvironment,
  values: ConditionValues,
): { context: { params: Map<string, CelValue>; steps: Map<string, Map<string, Map<string, CelValue>>> } } | { error: string } {
  // Only what the condition reads is converted: an unrelated malformed value cannot fail it.
  const params = new Map<string, CelValue>();
  for (const name of refs.params) {
    const declared = env.params.get(name)!; // NOTE: compile() refused unknown parameters.
    const what = `parameter "${name}"`;
    const given = values.params.get(name);
    if (!given) return { error: `no value for ${what}` };
    if (given.type !== declared.type) {
      return { error: `${what} is declared as ${declared.type} but its value is typed ${given.type}` };
    }
    const converted = toCel(declared.type, given.value, what);
    if ('error' in converted) return converted;
    params.set(name, converted.value);
  }
  const steps = new Map<string, Map<string, Map<string, CelValue>>>();
  for (const { step, name } of refs.results) {
    const declared = env.results.get(step)!.get(name)!;
    const what = `result "${name}" of step "${step}"`;
    const given = values.results.get(step)?.get(name);
    if (!given) return { error: `no value for ${what}` };
    if (given.type !== declared.type) {
      return { error: `${what} is declared as ${declared.type} but its value is typed ${given.type}` };
    }
    let value: CelValue;
    if ('list' in given) {
      if (!declared.list) return { error: `${what} is a single value but arrived as a list` };
      const items: CelValue[] = [];
      for (const [i, text] of given.list.entries()) {
        const converted = toCel(declared.type, text, `${what} (item ${i})`);
        if ('error' in converted) return converted;
        items.push(converted.value);
      }
      value = items;
    } else {
      if (declared.list) return { error: `${what} is a list (its step fans out) but arrived as a single value` };
      const converted = toCel(declared.type, given.value, what);
      if ('error' in converted) return converted;
      value = converted.value;
    }
    let stepValues = steps.get(step);
    if (!stepValues) steps.set(step, (stepValues = new Map([['results', new Map()]])));
    stepValues.get('results')!.set(name, value);
  }
  return { context: { params, steps } };
}

/** Ferry's canonical text of a value → the CEL value of its declared type. */
function toCel(type: ValueType, text: string, what: string): { value: CelValue } | { error: string } {
  const invalid = (as: string) => ({ error: `${what} has value ${JSON.stringify(text)}, which is not ${as}` });
  switch (type) {
    case 'string':
      return { value: text };
    case 'int': {
      if (!/^-?\d+$/.test(text)) return invalid('an int');
      const n = BigInt(text);
      return n < INT64_MIN || n > INT64_MAX ? invalid('a 64-bit int') : { value: n };
    }
    case 'float': {
      const n = Number(text);
      // Number('') is 0 and Number('0x1') is 1: accept only what reads as a decimal number.
      const decimal = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) || /^[+-]?(Infinity|NaN)$/.test(text);
      return decimal ? { value: n } : invalid('a float');
    }
    case 'bool':
      return text === 'true' ? { value: true } : text === 'false' ? { value: false } : invalid('a bool');
    case 'json': {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return invalid('JSON');
      }
      return { value: fromJson(parsed) };
    }
  }
}

// JSON numbers become doubles, as CEL's JSON mapping (google.protobuf.Value) has it; CEL
// compares int and double across types, so `params.config.replicas == 3` still holds.
function fromJson(value: unknown): CelValue {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value !== null && typeof value === 'object') {
    return new Map(Object.entries(value).map(([k, v]) => [k, fromJson(v)]));
  }
  return value as string | number | boolean | null; // JSON.parse gives nothing else
}

function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `an int (${value})`;
  if (typeof value === 'number') return `a double (${value})`;
  if (typeof value === 'string') return `a string (${JSON.stringify(value.slice(0, 40))})`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Map) return 'a map';
  return `a value of type ${typeof value}`;
}

// ---- helpers -----------------------------------------------------------------------------------

/** "column 7" for one-line expressions, "line 2, column 3" otherwise (1-based). */
function position(expression: string, offset: number | undefined): string {
  if (offset === undefined) return 'an unknown position';
  const before = expression.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return expression.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
}

function listOf(label: string, names: string[]): string {
  if (names.length === 0) return `none ${label === 'upstream' ? 'are upstream' : 'are declared'}`;
  const shown = names.sort(compareStrings).slice(0, 10).join(', ');
  return `${label}: ${shown}${names.length > 10 ? `, … ${names.length - 10} more` : ''}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Bounded LRU over a Map (which keeps insertion order): a hit moves the key to the end. */
function remember<V>(cache: Map<string, V>, key: string): V | undefined {
  const value = cache.get(key);
  if (value !== undefined) {
    cache.delete(key);
    cache.set(key, value);
  }
  return value;
}
function store<V>(cache: Map<string, V>, key: string, value: V, limit: number): void {
  cache.set(key, value);
  while (cache.size > limit) cache.delete(cache.keys().next().value!);
}

let syntaxEnvironment: Environment | undefined;
/** For referencedSteps: any names parse, since parsing does not resolve them. */
function syntaxOnly(): Environment {
  return (syntaxEnvironment ??= new Environment({ limits: PARSE_LIMITS, unlistedVariablesAreDyn: true }));
}
