// The operator's settings, from flags (--name=value) or FERRY_* environment variables, checked
// once at start into a frozen Config; a bad value stops the process with a clear message.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { SIGNING_KEY_MIN_BYTES } from './artifacts/signed-urls.ts';
import { OPERATOR_VERSION } from './version.ts';

export interface Config {
  kubeconfig: string | undefined;
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  workers: number;
  apiQps: number;
  apiBurst: number;
  httpPort: number;
  leaderElection: boolean;
  leaseNamespace: string;
  leaseName: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  identity: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** A watch that sends nothing for this long is restarted. */
  watchIdleTimeoutMs: number;
  artifactStore: string;
  /** Where the artifact server of a file:// store listens (the chart's Service). */
  artifactServer: string | undefined;
  /** host:port of an artifact server run inside this process (development and tests). */
  artifactServerListen: { host: string; port: number } | undefined;
  /** The key that signs artifact URLs (shared with the artifact server); random for an in-process server. */
  artifactSigningKey: Buffer | undefined;
  /** Or the Secret of the operator's namespace that holds it (made on first start). */
  artifactSigningKeySecret: string | undefined;
  agentImage: string;
  gcsEndpoint: string | undefined;
  gcsCredentialsSecret: string | undefined;
  /** Step Pods of a gs:// store get V4 signed URLs instead of a credential. */
  gcsSignedUrls: boolean;
  /** An S3 endpoint other than AWS's (SeaweedFS, MinIO, Ceph...). */
  s3Endpoint: string | undefined;
  s3Region: string | undefined;
  s3ForcePathStyle: boolean;
  insecureRegistries: string[];
  /** Registries (host[:port]) on private or loopback addresses tenants may name. */
  allowedPrivateRegistries: string[];
  /** Token services (host[:port]) other than a registry's own host. */
  allowedTokenRealms: string[];
  imageCacheMs: number;
  /** The size limit of each step Pod's /ferry volume (a Kubernetes quantity). */
  stepScratchSizeLimit: string;
  /** The timeout of a step that sets none. */
  defaultStepTimeoutSeconds: number;
  /** A step Pod stuck this long on an image it cannot pull fails its step (ImagePullFailed). */
  imagePullTimeoutSeconds: number;
  /** A step Pod no node can run for this long fails its step (Unschedulable). */
  unschedulableTimeoutSeconds: number;
  /** Infrastructure losses (Evicted, Preempted, NodeLost) of one step retried without using its retries.limit. */
  maxInfrastructureRetries: number;
  /** Keep the endpoints Pipelines declare (Deployments and Services in tenant namespaces); off, `serving` is only reported. */
  serving: boolean;
  /** nodeSelector and toleration keys steps may use; undefined: any. */
  allowedNodeSelectorKeys: string[] | undefined;
  allowedTolerationKeys: string[] | undefined;
  /** priorityClassName and runtimeClassName values steps may use; undefined: any. */
  allowedPriorityClasses: string[] | undefined;
  allowedRuntimeClasses: string[] | undefined;
  databaseUrl: string | undefined;
}

/** Every setting: flag name, environment variable, default, and what it means (README lists these). */
export const SETTINGS = {
  kubeconfig: { env: 'KUBECONFIG', default: '', help: 'kubeconfig file; in-cluster config when unset' },
  namespaces: { env: 'FERRY_NAMESPACES', default: '', help: 'comma-separated namespaces to watch; all when empty' },
  workers: { env: 'FERRY_WORKERS', default: '4', help: 'concurrent reconciles per controller' },
  'api-qps': { env: 'FERRY_API_QPS', default: '50', help: 'sustained Kubernetes API requests per second' },
  'api-burst': { env: 'FERRY_API_BURST', default: '100', help: 'API request burst' },
  'http-port': { env: 'FERRY_HTTP_PORT', default: '8080', help: 'port of /metrics, /healthz and /readyz (0 picks one)' },
  'leader-election': { env: 'FERRY_LEADER_ELECTION', default: 'true', help: 'elect a leader on a Lease (true/false)' },
  'lease-namespace': { env: 'FERRY_LEASE_NAMESPACE', default: '', help: "Lease namespace; the pod's own namespace in cluster, else default" },
  'lease-name': { env: 'FERRY_LEASE_NAME', default: 'ferry-operator', help: 'Lease name' },
  'lease-duration-seconds': { env: 'FERRY_LEASE_DURATION_SECONDS', default: '15', help: 'how long a silent leader keeps the Lease' },
  'renew-deadline-seconds': { env: 'FERRY_RENEW_DEADLINE_SECONDS', default: '10', help: 'a leader that cannot renew this long steps down' },
  'retry-period-seconds': { env: 'FERRY_RETRY_PERIOD_SECONDS', default: '2', help: 'how often to renew or try to acquire' },
  'log-level': { env: 'FERRY_LOG_LEVEL', default: 'info', help: 'debug, info, warn or error' },
  'watch-idle-timeout-seconds': { env: 'FERRY_WATCH_IDLE_TIMEOUT_SECONDS', default: '120', help: 'restart a watch silent this long' },
  'artifact-store': { env: 'FERRY_ARTIFACT_STORE', default: 'file:///var/lib/ferry/artifacts', help: 'artifact store: file:///path, gs://bucket/prefix or s3://bucket/prefix' },
  'artifact-server': { env: 'FERRY_ARTIFACT_SERVER', default: '', help: 'URL of the artifact server that serves a file:// store (ferry artifact-server)' },
  'artifact-server-listen': { env: 'FERRY_ARTIFACT_SERVER_LISTEN', default: '', help: 'host:port to serve a file:// store from this process instead (development)' },
  'artifact-signing-key-file': { env: 'FERRY_ARTIFACT_SIGNING_KEY_FILE', default: '', help: 'file holding the key that signs artifact URLs (at least 32 bytes)' },
  'artifact-signing-key-secret': { env: 'FERRY_ARTIFACT_SIGNING_KEY_SECRET', default: '', help: "Secret in the operator's namespace holding that key under 'key'; made on first start" },
  'agent-image': { env: 'FERRY_AGENT_IMAGE', default: `ferry:${OPERATOR_VERSION}`, help: "image of the step agent (the operator's own image)" },
  'gcs-endpoint': { env: 'FERRY_GCS_ENDPOINT', default: '', help: 'GCS API endpoint override (an emulator)' },
  'gcs-credentials-secret': { env: 'FERRY_GCS_CREDENTIALS_SECRET', default: '', help: 'Secret with key.json for step Pods when gcs-signed-urls is false' },
  'gcs-signed-urls': { env: 'FERRY_GCS_SIGNED_URLS', default: 'true', help: 'give step Pods V4 signed URLs, not a credential (needs a key or signBlob)' },
  's3-endpoint': { env: 'FERRY_S3_ENDPOINT', default: '', help: "S3 endpoint URL other than AWS's (credentials: AWS_* variables or IRSA web identity)" },
  's3-region': { env: 'FERRY_S3_REGION', default: '', help: 'S3 region; AWS_REGION when empty' },
  's3-force-path-style': { env: 'FERRY_S3_FORCE_PATH_STYLE', default: 'false', help: 'path-style S3 requests (endpoint/bucket/key), which most S3-compatible servers need' },
  'database-url': { env: 'FERRY_DATABASE_URL', default: '', help: 'PostgreSQL DSN of the metadata store; none records nothing' },
  'image-cache-seconds': { env: 'FERRY_IMAGE_CACHE_SECONDS', default: '30', help: 'how long a resolved tag → digest is reused' },
  'step-scratch-size-limit': { env: 'FERRY_STEP_SCRATCH_SIZE_LIMIT', default: '20Gi', help: "size limit of each step Pod's /ferry volume (inputs, outputs)" },
  'default-step-timeout-seconds': { env: 'FERRY_DEFAULT_STEP_TIMEOUT_SECONDS', default: '86400', help: 'timeout of a step that sets none' },
  'image-pull-timeout-seconds': { env: 'FERRY_IMAGE_PULL_TIMEOUT_SECONDS', default: '300', help: 'a step Pod that cannot pull an image this long fails its step (ImagePullFailed, not retried)' },
  'unschedulable-timeout-seconds': { env: 'FERRY_UNSCHEDULABLE_TIMEOUT_SECONDS', default: '600', help: 'a step Pod no node can run this long fails its step (Unschedulable, not retried)' },
  serving: { env: 'FERRY_SERVING', default: 'true', help: 'keep the endpoints Pipelines declare (needs RBAC for Deployments and Services)' },
  'max-infrastructure-retries': { env: 'FERRY_MAX_INFRASTRUCTURE_RETRIES', default: '3', help: "evictions, preemptions and lost nodes of a step retried without using its retries.limit" },
  'allowed-node-selector-keys': { env: 'FERRY_ALLOWED_NODE_SELECTOR_KEYS', default: '*', help: "comma-separated nodeSelector keys steps may use; '*' any, empty none" },
  'allowed-toleration-keys': { env: 'FERRY_ALLOWED_TOLERATION_KEYS', default: '*', help: "comma-separated toleration keys steps may use; '*' any, empty none" },
  'allowed-priority-classes': { env: 'FERRY_ALLOWED_PRIORITY_CLASSES', default: '*', help: "comma-separated PriorityClasses steps may name; '*' any, empty none" },
  'allowed-runtime-classes': { env: 'FERRY_ALLOWED_RUNTIME_CLASSES', default: '*', help: "comma-separated RuntimeClasses steps may name; '*' any, empty none" },
  'insecure-registries': { env: 'FERRY_INSECURE_REGISTRIES', default: '', help: 'comma-separated registries spoken to over plain http' },
  'allowed-private-registries': { env: 'FERRY_ALLOWED_PRIVATE_REGISTRIES', default: '', help: 'comma-separated registries on private or loopback addresses steps may use' },
  'allowed-token-realms': { env: 'FERRY_ALLOWED_TOKEN_REALMS', default: '', help: "comma-separated token services besides a registry's own host" },
} as const;

type SettingName = keyof typeof SETTINGS;

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export class ConfigError extends Error {}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.keys(SETTINGS).map((k) => [k, { type: 'string' as const }])),
    strict: true,
    allowPositionals: false,
  });
  const raw = (name: SettingName): string => {
    const flag = values[name];
    if (typeof flag === 'string') return flag;
    return env[SETTINGS[name].env] ?? SETTINGS[name].default;
  };
  const integer = (name: SettingName, min: number, max: number): number => {
    const text = raw(name);
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(`--${name} (${SETTINGS[name].env}) must be an integer from ${min} to ${max}, got "${text}"`);
    }
    return n;
  };
  const bool = (name: SettingName): boolean => {
    const text = raw(name).toLowerCase();
    if (text === 'true' || text === 'false') return text === 'true';
    throw new ConfigError(`--${name} (${SETTINGS[name].env}) must be true or false, got "${text}"`);
  };
  const named = (name: SettingName) => `--${name} (${SETTINGS[name].env})`;
  const level = raw('log-level');
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new ConfigError(`${named('log-level')} must be debug, info, warn or error, got "${level}"`);
  }

  const config: Config = {
    kubeconfig: raw('kubeconfig') || undefined,
    namespaces: raw('namespaces').split(',').map((s) => s.trim()).filter(Boolean),
    workers: integer('workers', 1, 64),
    apiQps: integer('api-qps', 1, 10_000),
    apiBurst: integer('api-burst', 1, 10_000),
    httpPort: integer('http-port', 0, 65535),
    leaderElection: bool('leader-election'),
    leaseNamespace: raw('lease-namespace') || inClusterNamespace() || 'default',
    leaseName: raw('lease-name'),
    leaseDurationMs: integer('lease-duration-seconds', 1, 3600) * 1000,
    renewDeadlineMs: integer('renew-deadline-seconds', 1, 3600) * 1000,
    retryPeriodMs: integer('retry-period-seconds', 1, 3600) * 1000,
    identity: `${hostname()}_${randomBytes(4).toString('hex')}`,
    logLevel: level as Config['logLevel'],
    watchIdleTimeoutMs: integer('watch-idle-timeout-seconds', 5, 3600) * 1000,
    artifactStore: raw('artifact-store'),
    artifactServer: raw('artifact-server') || undefined,
    artifactServerListen: hostPort(raw('artifact-server-listen'), named('artifact-server-listen')),
    artifactSigningKey: signingKey(raw('artifact-signing-key-file'), named('artifact-signing-key-file')),
    artifactSigningKeySecret: raw('artifact-signing-key-secret') || undefined,
    agentImage: raw('agent-image'),
    gcsEndpoint: raw('gcs-endpoint') || undefined,
    gcsCredentialsSecret: raw('gcs-credentials-secret') || undefined,
    gcsSignedUrls: bool('gcs-signed-urls'),
    s3Endpoint: raw('s3-endpoint') || undefined,
    s3Region: raw('s3-region') || undefined,
    s3ForcePathStyle: bool('s3-force-path-style'),
    insecureRegistries: raw('insecure-registries').split(',').map((s) => s.trim()).filter(Boolean),
    allowedPrivateRegistries: raw('allowed-private-registries').split(',').map((s) => s.trim()).filter(Boolean),
    allowedTokenRealms: raw('allowed-token-realms').split(',').map((s) => s.trim()).filter(Boolean),
    imageCacheMs: integer('image-cache-seconds', 0, 3600) * 1000,
    stepScratchSizeLimit: quantity(raw('step-scratch-size-limit'), named('step-scratch-size-limit')),
    defaultStepTimeoutSeconds: integer('default-step-timeout-seconds', 1, 30 * 86400),
    imagePullTimeoutSeconds: integer('image-pull-timeout-seconds', 1, 86400),
    unschedulableTimeoutSeconds: integer('unschedulable-timeout-seconds', 1, 7 * 86400),
    maxInfrastructureRetries: integer('max-infrastructure-retries', 0, 20),
    serving: bool('serving'),
    allowedNodeSelectorKeys: allowList(raw('allowed-node-selector-keys')),
    allowedTolerationKeys: allowList(raw('allowed-toleration-keys')),
    allowedPriorityClasses: allowList(raw('allowed-priority-classes')),
    allowedRuntimeClasses: allowList(raw('allowed-runtime-classes')),
    databaseUrl: raw('database-url') || undefined,
  };
  if (!/^(file:\/\/\/|gs:\/\/|s3:\/\/)/.test(config.artifactStore)) {
    throw new ConfigError(`--artifact-store (FERRY_ARTIFACT_STORE) must be file:///absolute/path, gs://bucket/prefix or s3://bucket/prefix, got "${config.artifactStore}"`);
  }
  if (config.artifactStore.startsWith('file:')) {
    if (!config.artifactServer && !config.artifactServerListen) {
      throw new ConfigError(`a file:// artifact store is served to step Pods by an artifact server: set ${named('artifact-server')} (the chart does) or ${named('artifact-server-listen')} (one process, for development)`);
    }
    if (config.artifactServer && !config.artifactSigningKey && !config.artifactSigningKeySecret) {
      throw new ConfigError(`${named('artifact-server')} needs ${named('artifact-signing-key-secret')} or ${named('artifact-signing-key-file')}: the key the server checks signatures with`);
    }
  }
  if (config.renewDeadlineMs >= config.leaseDurationMs) {
    throw new ConfigError(`${named('renew-deadline-seconds')} must be shorter than ${named('lease-duration-seconds')}`);
  }
  return Object.freeze(config);
}

/** '*' → undefined (any); otherwise the listed keys (none when empty). */
function allowList(text: string): string[] | undefined {
  if (text.trim() === '*') return undefined;
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

/** A Kubernetes quantity such as 20Gi or 500M. */
function quantity(text: string, name: string): string {
  if (!/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/.test(text)) throw new ConfigError(`${name} must be a quantity such as 20Gi, got "${text}"`);
  return text;
}

/** `host:port` → parts; empty → undefined. */
export function hostPort(text: string, name: string): { host: string; port: number } | undefined {
  if (text === '') return undefined;
  const match = /^(.+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new ConfigError(`${name} must be host:port, got "${text}"`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/** The signing key in a file (a mounted Secret); empty path → undefined. */
export function signingKey(path: string, name: string): Buffer | undefined {
  if (path === '') return undefined;
  let key: Buffer;
  try {
    key = readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const trimmed = Buffer.from(key.toString('utf8').trim());
  if (trimmed.length < SIGNING_KEY_MIN_BYTES) throw new ConfigError(`${name}: the key in ${path} has ${trimmed.length} bytes; at least ${SIGNING_KEY_MIN_BYTES} are needed`);
  return trimmed;
}

function inClusterNamespace(): string | undefined {
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
