// What a Pipeline's schema cannot say, checked here: dependsOn names real steps, no cycles,
// inputs come from an upstream step's declared output, parameters exist and defaults fit
// their types. The first problem found becomes the Ready=False reason and message.
import { parseImageReference } from '../../images/reference.ts';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import { FERRY_KEY_PREFIX, LABEL_MANAGED_BY } from '../../api/v1alpha1/labels.ts';
import { RESERVED_MOUNT_PATH, SERVICE_ACCOUNT_TOKEN_DIR, type PipelineSpec, type PodMetadata, type StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { coerceParameter } from '../pipeline-run/parameters.ts';
import { findCycle, upstreamOf } from './dag.ts';
import { variablesOf } from './step-references.ts';
import { controlFlowProblem } from './validate-control-flow.ts';

export interface ValidationProblem {
  reason: string;
  message: string;
}

/** Names of the parameters a step's command, args and env values refer to with $(params.x). */
export const referencedParameters = (step: StepSpec): string[] => [...new Set(variablesOf(step).params)];

export function validatePipeline(spec: PipelineSpec): ValidationProblem | undefined {
  const steps = spec.steps;
  const stepNames = new Set(steps.map((s) => s.name));
  const parameters = new Map((spec.parameters ?? []).map((p) => [p.name, p]));

  for (const p of parameters.values()) {
    if (p.default === undefined) continue;
    const coerced = coerceParameter(p.type ?? 'string', p.default);
    if ('error' in coerced) {
      return { reason: Reasons.InvalidDefault, message: `parameter "${p.name}": default ${coerced.error}` };
    }
  }

  for (const step of steps) {
    for (const dep of step.dependsOn ?? []) {
      if ((spec.finally ?? []).some((f) => f.name === dep)) {
        return { reason: Reasons.InvalidFinally, message: `step "${step.name}" depends on finally step "${dep}": finally steps run last` };
      }
      if (!stepNames.has(dep)) {
        return { reason: Reasons.UnknownDependency, message: `step "${step.name}" depends on unknown step "${dep}"` };
      }
    }
  }

  const cycle = findCycle(steps);
  if (cycle) return { reason: Reasons.DependencyCycle, message: `dependency cycle: ${cycle.join(' → ')}` };

  const outputs = new Map(steps.map((s) => [s.name, new Set((s.outputs ?? []).map((o) => o.name))]));
  for (const step of steps) {
    const upstream = upstreamOf(steps, step.name);
    for (const input of step.inputs ?? []) {
      // Model and other-pipeline inputs are resolved when a run is frozen.
      if (!input.from) continue;
      const { step: from, output } = input.from;
      const where = `step "${step.name}" input "${input.name}"`;
      if (!stepNames.has(from)) return { reason: Reasons.InvalidInput, message: `${where} reads from unknown step "${from}"` };
      if (!upstream.has(from)) {
        return { reason: Reasons.InvalidInput, message: `${where} reads from step "${from}", which is not upstream of it (add it to dependsOn)` };
      }
      if (!outputs.get(from)?.has(output)) {
        return { reason: Reasons.InvalidInput, message: `${where} reads output "${output}", which step "${from}" does not declare` };
      }
    }
    for (const name of [...(step.parameters ?? []), ...referencedParameters(step)]) {
      if (!parameters.has(name)) {
        return { reason: Reasons.UnknownParameter, message: `step "${step.name}" uses parameter "${name}", which the pipeline does not declare` };
      }
    }
  }
  return controlFlowProblem(spec) ?? stepPodsProblem(spec) ?? servingProblem(spec);
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
/** Absolute, with no empty, "." or ".." segment and no trailing slash: what the CRD's pattern allows. */
const NORMALISED_ABSOLUTE = /^(\/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))+$/;

/**
 * What a step's Pod fields need beyond the schema: mounts name the step's own volumes, stay out of
 * /ferry (and of the token's directory when the token is mounted), volumes keep to one source and
 * to names that are not Ferry's; podMetadata keys are the user's to set. Also run on reproduced
 * configurations (freeze.ts), which no CRD schema has seen.
 */
export function stepPodsProblem(spec: Pick<PipelineSpec, 'steps' | 'finally' | 'podMetadata'>): ValidationProblem | undefined {
  const metadata = podMetadataProblem(spec.podMetadata);
  if (metadata) return { reason: Reasons.InvalidPodMetadata, message: `podMetadata: ${metadata}` };
  for (const step of [...spec.steps, ...(spec.finally ?? [])]) {
    const problem = stepVolumesProblem(step);
    if (problem) return problem;
  }
  return undefined;
}

function stepVolumesProblem(step: StepSpec): ValidationProblem | undefined {
  const volumes = new Set<string>();
  for (const volume of step.volumes ?? []) {
    const where = `step "${step.name}" volume "${volume.name}"`;
    if (volume.name === 'ferry' || volume.name.startsWith('ferry-')) return { reason: Reasons.InvalidVolume, message: `${where}: names ferry and ferry-* are Ferry's own` };
    const sources = [volume.persistentVolumeClaim, volume.configMap, volume.secret, volume.emptyDir].filter((s) => s !== undefined).length;
    if (sources !== 1) return { reason: Reasons.InvalidVolume, message: `${where}: set exactly one of persistentVolumeClaim, configMap, secret or emptyDir` };
    volumes.add(volume.name);
  }
  for (const mount of step.volumeMounts ?? []) {
    const where = `step "${step.name}" mount at "${mount.mountPath}"`;
    if (!volumes.has(mount.name)) {
      return { reason: Reasons.UnknownVolume, message: `${where} names volume "${mount.name}", which the step's volumes do not declare` };
    }
    if (!NORMALISED_ABSOLUTE.test(mount.mountPath)) {
      return { reason: Reasons.InvalidVolumeMount, message: `${where}: a mount path is absolute and normalised (no ., .. or empty segments), and not /` };
    }
    if (under(mount.mountPath, RESERVED_MOUNT_PATH)) {
      return { reason: Reasons.InvalidVolumeMount, message: `${where}: ${RESERVED_MOUNT_PATH} and what is under it are Ferry's own` };
    }
    if (step.automountServiceAccountToken && under(mount.mountPath, SERVICE_ACCOUNT_TOKEN_DIR)) {
      return { reason: Reasons.InvalidVolumeMount, message: `${where}: the service account token is mounted at ${SERVICE_ACCOUNT_TOKEN_DIR}` };
    }
    if (mount.subPath !== undefined && (mount.subPath.startsWith('/') || mount.subPath.split('/').includes('..'))) {
      return { reason: Reasons.InvalidVolumeMount, message: `${where}: subPath is relative and has no .. segment` };
    }
  }
  return undefined;
}

// Label and annotation keys: an optional DNS subdomain prefix and a name (the API server's rules).
const QUALIFIED_NAME = /^(([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
/** Prefixes Kubernetes reserves (kubernetes.io, k8s.io and their subdomains), where e.g. AppArmor profiles live. */
const KUBERNETES_PREFIX = /^([^/]*\.)?(kubernetes\.io|k8s\.io)\//;
/** Keys of the Kubernetes prefixes a user may set: the recommended app labels, the autoscaler's eviction hint. */
const OPEN_KUBERNETES_KEYS = /^(app\.kubernetes\.io\/(?!managed-by$)[^/]+|cluster-autoscaler\.kubernetes\.io\/safe-to-evict)$/;
/** Annotations container runtimes read as settings (CRI-O, containerd, Kata, gVisor). */
const RUNTIME_ANNOTATION = /^(io\.kubernetes\.|io\.containerd\.|io\.containers\.|io\.katacontainers\.|dev\.gvisor\.)/;

/**
 * Why a podMetadata key is not the user's to set, or undefined. NOTE: nothing in podMetadata may
 * loosen the Pod's security: Kubernetes' own annotation space holds AppArmor and seccomp profiles,
 * and runtimes read their settings from annotations, so both are refused.
 */
export function reservedPodMetadataKey(key: string, kind: 'label' | 'annotation'): string | undefined {
  if (key.startsWith(FERRY_KEY_PREFIX) || key === LABEL_MANAGED_BY) return "it is Ferry's own";
  if (KUBERNETES_PREFIX.test(key) && !OPEN_KUBERNETES_KEYS.test(key)) return 'Kubernetes reserves its prefix';
  if (kind === 'annotation' && RUNTIME_ANNOTATION.test(key)) return 'container runtimes read it as a setting';
  return undefined;
}

/** The first podMetadata key or value that is invalid or not the user's to set, or undefined. */
export function podMetadataProblem(metadata: PodMetadata | undefined): string | undefined {
  for (const [kind, entries] of [['label', metadata?.labels], ['annotation', metadata?.annotations]] as const) {
    for (const [key, value] of Object.entries(entries ?? {})) {
      const name = key.split('/').at(-1) ?? '';
      if (!QUALIFIED_NAME.test(key) || key.length - name.length > 254) return `${kind} key "${key}" is not a valid key (an optional DNS prefix and a name of at most 63 characters)`;
      const reserved = reservedPodMetadataKey(key, kind);
      if (reserved) return `${kind} key "${key}" cannot be set: ${reserved}`;
      if (kind === 'label' && !LABEL_VALUE.test(value)) return `label "${key}": value "${value}" is not a valid label value`;
    }
  }
  return undefined;
}

/** The contract's variables (docs/serving.md) are the operator's to set. */
const RESERVED_SERVING_ENV = /^(PORT|FERRY_.*)$/;

/** An endpoint the schema admits but that could never run. */
function servingProblem(spec: PipelineSpec): ValidationProblem | undefined {
  const serving = spec.serving;
  if (!serving) return undefined;
  try {
    parseImageReference(serving.image);
  } catch (err) {
    return { reason: Reasons.InvalidServing, message: `serving: image ${JSON.stringify(serving.image)}: ${err instanceof Error ? err.message : String(err)}` };
  }
  const reserved = (serving.env ?? []).find((e) => RESERVED_SERVING_ENV.test(e.name));
  if (reserved) return { reason: Reasons.InvalidServing, message: `serving: env ${reserved.name} is set by the operator (PORT and FERRY_*)` };
  return undefined;
}
