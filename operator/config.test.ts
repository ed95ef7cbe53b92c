import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OPERATOR_VERSION } from './version.ts';
import { ConfigError, SETTINGS, loadConfig } from './config.ts';

// NOTE: every case sets the lease namespace, so loadConfig never looks for the in-cluster
// service account file (no I/O, same result on any machine).
// A file:// store needs an artifact server: the chart's, named with its signing key Secret.
const BASE_ENV = { FERRY_LEASE_NAMESPACE: 'ferry-system', FERRY_ARTIFACT_SERVER: 'http://ferry-artifacts.ferry-system.svc:8081', FERRY_ARTIFACT_SIGNING_KEY_SECRET: 'ferry-artifact-signing-key' };

describe('loadConfig', () => {
  it('has defaults for everything', () => {
    const config = loadConfig([], BASE_ENV);
    const { identity, ...rest } = config;
    assert.deepEqual(rest, {
      kubeconfig: undefined,
      namespaces: [],
      workers: 4,
      apiQps: 50,
      apiBurst: 100,
      httpPort: 8080,
      leaderElection: true,
      leaseNamespace: 'ferry-system',
      leaseName: 'ferry-operator',
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      logLevel: 'info',
      watchIdleTimeoutMs: 120_000,
      artifactStore: 'file:///var/lib/ferry/artifacts',
      artifactServer: 'http://ferry-artifacts.ferry-system.svc:8081',
      artifactServerListen: undefined,
      artifactSigningKey: undefined,
      artifactSigningKeySecret: 'ferry-artifact-signing-key',
      agentImage: `ferry:${OPERATOR_VERSION}`,
      gcsEndpoint: undefined,
      gcsCredentialsSecret: undefined,
      gcsSignedUrls: true,
      s3Endpoint: undefined,
      s3Region: undefined,
      s3ForcePathStyle: false,
      insecureRegistries: [],
      allowedPrivateRegistries: [],
      allowedTokenRealms: [],
      imageCacheMs: 30_000,
      stepScratchSizeLimit: '20Gi',
      defaultStepTimeoutSeconds: 86_400,
      imagePullTimeoutSeconds: 300,
      unschedulableTimeoutSeconds: 600,
      maxInfrastructureRetries: 3,
      serving: true,
      allowedNodeSelectorKeys: undefined,
      allowedTolerationKeys: undefined,
      allowedPriorityClasses: undefined,
      allowedRuntimeClasses: undefined,
      databaseUrl: undefined,
    });
    assert.match(identity, /^.+_[0-9a-f]{8}$/);
    assert.ok(Object.isFrozen(config));
  });

  it('reads FERRY_* environment variables', () => {
    const config = loadConfig([], {
      ...BASE_ENV,
      KUBECONFIG: '/home/me/.kube/config',
      FERRY_NAMESPACES: ' ml, ,data ',
      FERRY_WORKERS: '8',
      FERRY_LEADER_ELECTION: 'FALSE',
      FERRY_LOG_LEVEL: 'debug',
      FERRY_LEASE_DURATION_SECONDS: '30',
    });
    assert.equal(config.kubeconfig, '/home/me/.kube/config');
    assert.deepEqual(config.namespaces, ['ml', 'data']);
    assert.equal(config.workers, 8);
    assert.equal(config.leaderElection, false);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.leaseDurationMs, 30_000);
  });

  it('reads placement allowlists: * allows any key, empty none', () => {
    const listed = loadConfig(['--allowed-node-selector-keys=pool, gpu', '--allowed-toleration-keys='], BASE_ENV);
    assert.deepEqual(listed.allowedNodeSelectorKeys, ['pool', 'gpu']);
    assert.deepEqual(listed.allowedTolerationKeys, []);
    const classes = loadConfig(['--allowed-priority-classes=batch-low,batch-high', '--allowed-runtime-classes='], BASE_ENV);
    assert.deepEqual(classes.allowedPriorityClasses, ['batch-low', 'batch-high']);
    assert.deepEqual(classes.allowedRuntimeClasses, []);
    assert.equal(loadConfig([], { ...BASE_ENV, FERRY_ALLOWED_RUNTIME_CLASSES: 'gvisor' }).allowedRuntimeClasses?.[0], 'gvisor');
  });

  it('lets flags override the environment', () => {
    const config = loadConfig(['--workers=2', '--http-port', '0', '--namespaces=a', '--log-level=warn'], {
      ...BASE_ENV,
      FERRY_WORKERS: '16',
      FERRY_HTTP_PORT: '9090',
      FERRY_NAMESPACES: 'b,c',
      FERRY_LOG_LEVEL: 'error',
    });
    assert.equal(config.workers, 2);
    assert.equal(config.httpPort, 0);
    assert.deepEqual(config.namespaces, ['a']);
    assert.equal(config.logLevel, 'warn');
  });

  it('reads the failure settings from flags or FERRY_* variables', () => {
    const config = loadConfig(['--image-pull-timeout-seconds=2', '--max-infrastructure-retries=0'], { ...BASE_ENV, FERRY_UNSCHEDULABLE_TIMEOUT_SECONDS: '30' });
    assert.deepEqual([config.imagePullTimeoutSeconds, config.unschedulableTimeoutSeconds, config.maxInfrastructureRetries], [2, 30, 0]);
  });

  const bad: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['workers below 1 (flag)', ['--workers=0'], {}, /--workers \(FERRY_WORKERS\) must be an integer from 1 to 64, got "0"/],
    ['workers not an integer (env)', [], { FERRY_WORKERS: '2.5' }, /--workers \(FERRY_WORKERS\).*got "2\.5"/],
    ['api qps not a number', [], { FERRY_API_QPS: 'fast' }, /--api-qps \(FERRY_API_QPS\).*got "fast"/],
    ['api burst too large', ['--api-burst=10001'], {}, /--api-burst \(FERRY_API_BURST\)/],
    ['http port out of range', ['--http-port=70000'], {}, /--http-port \(FERRY_HTTP_PORT\) must be an integer from 0 to 65535/],
    ['leader election not a boolean', [], { FERRY_LEADER_ELECTION: 'yes' }, /--leader-election \(FERRY_LEADER_ELECTION\) must be true or false, got "yes"/],
    ['watch idle timeout too short', ['--watch-idle-timeout-seconds=1'], {}, /--watch-idle-timeout-seconds \(FERRY_WATCH_IDLE_TIMEOUT_SECONDS\)/],
    ['a file:// store without an artifact server', [], { FERRY_ARTIFACT_SERVER: '' }, /a file:\/\/ artifact store is served to step Pods by an artifact server: set --artifact-server \(FERRY_ARTIFACT_SERVER\)/],
    ['an artifact server without a signing key', [], { FERRY_ARTIFACT_SIGNING_KEY_SECRET: '' }, /--artifact-server \(FERRY_ARTIFACT_SERVER\) needs --artifact-signing-key-secret/],
    ['an artifact server address that is not host:port', ['--artifact-server-listen=8081'], {}, /--artifact-server-listen \(FERRY_ARTIFACT_SERVER_LISTEN\) must be host:port, got "8081"/],
    ['a scratch size that is not a quantity', ['--step-scratch-size-limit=lots'], {}, /--step-scratch-size-limit \(FERRY_STEP_SCRATCH_SIZE_LIMIT\) must be a quantity such as 20Gi, got "lots"/],
    ['an image pull timeout of 0', ['--image-pull-timeout-seconds=0'], {}, /--image-pull-timeout-seconds \(FERRY_IMAGE_PULL_TIMEOUT_SECONDS\) must be an integer from 1 to 86400, got "0"/],
    ['an unschedulable timeout that is not a number', [], { FERRY_UNSCHEDULABLE_TIMEOUT_SECONDS: 'soon' }, /--unschedulable-timeout-seconds \(FERRY_UNSCHEDULABLE_TIMEOUT_SECONDS\).*got "soon"/],
    ['negative infrastructure retries', ['--max-infrastructure-retries=-1'], {}, /--max-infrastructure-retries \(FERRY_MAX_INFRASTRUCTURE_RETRIES\) must be an integer from 0 to 20/],
    ['unknown log level', [], { FERRY_LOG_LEVEL: 'trace' }, /--log-level \(FERRY_LOG_LEVEL\) must be debug, info, warn or error, got "trace"/],
    [
      'renew deadline not shorter than the lease',
      ['--renew-deadline-seconds=15'],
      {},
      /--renew-deadline-seconds \(FERRY_RENEW_DEADLINE_SECONDS\).*shorter than.*--lease-duration-seconds \(FERRY_LEASE_DURATION_SECONDS\)/,
    ],
  ];
  for (const [name, argv, env, message] of bad) {
    it(`rejects ${name} with a ConfigError naming the flag and variable`, () => {
      assert.throws(() => loadConfig(argv, { ...BASE_ENV, ...env }), (err: unknown) => {
        assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('rejects unknown flags', () => {
    assert.throws(() => loadConfig(['--wrokers=2'], BASE_ENV), /wrokers/);
  });

  it('documents every setting with an environment variable and a default', () => {
    for (const [name, setting] of Object.entries(SETTINGS)) {
      assert.match(setting.env, /^(FERRY_[A-Z0-9_]+|KUBECONFIG)$/, name);
      assert.ok(setting.help.length > 0, name);
    }
  });
});
