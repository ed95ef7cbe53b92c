import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reasons } from '../../api/v1alpha1/conditions.ts';
import type { PipelineSpec, StepSpec } from '../../api/v1alpha1/pipeline.ts';
import { diamond, step } from '../../../test/builders.ts';
import { referencedParameters, validatePipeline } from './validate.ts';

describe('validatePipeline', () => {
  it('accepts a valid pipeline with parameters, inputs and outputs', () => {
    const spec: PipelineSpec = {
      parameters: [
        { name: 'lr', type: 'float', default: 0.01 },
        { name: 'epochs', type: 'int', default: '3' },
        { name: 'shuffle', type: 'bool', default: true },
        { name: 'dataset', type: 'string' },
      ],
      steps: [
        step('prepare', { args: ['--data=$(params.dataset)'], outputs: [{ name: 'train-set', type: 'dataset' }] }),
        step('train', {
          dependsOn: ['prepare'],
          parameters: ['lr', 'epochs'],
          command: ['train', '--shuffle=$(params.shuffle)'],
          inputs: [{ name: 'data', from: { step: 'prepare', output: 'train-set' } }],
          outputs: [{ name: 'model', type: 'model' }],
        }),
        step('evaluate', {
          dependsOn: ['train'],
          // Upstream through train: an input may come from any step reachable through dependsOn.
          inputs: [
            { name: 'model', from: { step: 'train', output: 'model' } },
            { name: 'data', from: { step: 'prepare', output: 'train-set' } },
          ],
          env: [{ name: 'LR', value: '$(params.lr)' }, { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }],
        }),
      ],
    };
    assert.equal(validatePipeline(spec), undefined);
    assert.equal(validatePipeline({ steps: diamond() }), undefined);
  });

  const cases: Array<{ name: string; spec: PipelineSpec; reason: string; message: string | RegExp }> = [
    {
      name: 'unknown dependsOn',
      spec: { steps: [step('a'), step('b', { dependsOn: ['a', 'ghost'] })] },
      reason: Reasons.UnknownDependency,
      message: 'step "b" depends on unknown step "ghost"',
    },
    {
      name: '3-cycle, named in flow order',
      spec: { steps: [step('x', { dependsOn: ['z'] }), step('y', { dependsOn: ['x'] }), step('z', { dependsOn: ['y'] })] },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: x → y → z → x',
    },
    {
      name: '2-cycle',
      spec: { steps: [step('a', { dependsOn: ['b'] }), step('b', { dependsOn: ['a'] })] },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: a → b → a',
    },
    {
      name: 'cycle not involving the first step',
      spec: {
        steps: [step('start'), step('p', { dependsOn: ['start', 'r'] }), step('q', { dependsOn: ['p'] }), step('r', { dependsOn: ['q'] })],
      },
      reason: Reasons.DependencyCycle,
      message: 'dependency cycle: p → q → r → p',
    },
    {
      name: 'input from a step that is not upstream',
      spec: {
        steps: [
          step('a', { outputs: [{ name: 'out', type: 'file' }] }),
          step('b', { inputs: [{ name: 'in', from: { step: 'a', output: 'out' } }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads from step "a", which is not upstream of it (add it to dependsOn)',
    },
    {
      name: 'input from a downstream step',
      spec: {
        steps: [
          step('a', { inputs: [{ name: 'in', from: { step: 'b', output: 'out' } }] }),
          step('b', { dependsOn: ['a'], outputs: [{ name: 'out', type: 'file' }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: /step "a" input "in" reads from step "b", which is not upstream/,
    },
    {
      name: 'input from an unknown step',
      spec: { steps: [step('a'), step('b', { dependsOn: ['a'], inputs: [{ name: 'in', from: { step: 'nope', output: 'out' } }] })] },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads from unknown step "nope"',
    },
    {
      name: 'input naming an undeclared output',
      spec: {
        steps: [
          step('a', { outputs: [{ name: 'model', type: 'model' }] }),
          step('b', { dependsOn: ['a'], inputs: [{ name: 'in', from: { step: 'a', output: 'metrics' } }] }),
        ],
      },
      reason: Reasons.InvalidInput,
      message: 'step "b" input "in" reads output "metrics", which step "a" does not declare',
    },
    {
      name: 'step parameter not declared',
      spec: { parameters: [{ name: 'lr', type: 'float' }], steps: [step('a', { parameters: ['lr', 'epochs'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "epochs", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in args',
      spec: { steps: [step('a', { args: ['--lr=$(params.lr)'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "lr", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in command',
      spec: { parameters: [{ name: 'lr', type: 'float' }], steps: [step('a', { command: ['train', '$(params.lr)', '$(params.batch-size)'] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "a" uses parameter "batch-size", which the pipeline does not declare',
    },
    {
      name: '$(params.x) in env',
      spec: { steps: [step('a'), step('b', { env: [{ name: 'SEED', value: 'seed=$(params.seed)' }] })] },
      reason: Reasons.UnknownParameter,
      message: 'step "b" uses parameter "seed", which the pipeline does not declare',
    },
    {
      name: 'int default that is not an integer',
      spec: { parameters: [{ name: 'epochs', type: 'int', default: '3.5' }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: 'parameter "epochs": default "3.5" is not an integer',
    },
    {
      name: 'bool default that is not a boolean',
      spec: { parameters: [{ name: 'shuffle', type: 'bool', default: 'yes' }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: /parameter "shuffle": default "yes" is not a boolean/,
    },
    {
      name: 'string default that is a number',
      spec: { parameters: [{ name: 'tag', type: 'string', default: 3 }], steps: [step('a')] },
      reason: Reasons.InvalidDefault,
      message: /parameter "tag": default 3 is not a string/,
    },
  ];
  for (const c of cases) {
    it(`rejects ${c.name} (${c.reason})`, () => {
      const problem = validatePipeline(c.spec);
      assert.ok(problem, 'expected a problem');
      assert.equal(problem.reason, c.reason);
      if (typeof c.message === 'string') assert.equal(problem.message, c.message);
      else assert.match(problem.message, c.message);
    });
  }
});

describe('referencedParameters', () => {
  it('collects $(params.x) from command, args and env values, once each', () => {
    const refs = referencedParameters(
      step('a', {
        command: ['$(params.a)'],
        args: ['--x=$(params.b)', '$(params.a)-$(params.c_d)', '$(other.x)', '$(params.)'],
        env: [{ name: 'E', value: '$(params.e-f)' }, { name: 'S', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }],
      }),
    );
    assert.deepEqual(refs.sort(), ['a', 'b', 'c_d', 'e-f']);
  });
});

describe('validatePipeline: volumes, mounts and podMetadata', () => {
  const config = { name: 'settings', configMap: { name: 'train-settings' } };
  const mounted = (mountPath: string, extra: Partial<StepSpec> = {}): PipelineSpec => ({
    steps: [step('a', { volumes: [config], volumeMounts: [{ name: 'settings', mountPath }], ...extra })],
  });

  it('accepts mounts of the step\'s own volumes outside /ferry, and valid podMetadata', () => {
    const spec: PipelineSpec = {
      podMetadata: { labels: { team: 'vision', 'app.kubernetes.io/name': 'trainer' }, annotations: { 'example.com/owner': 'vision', 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false' } },
      steps: [step('a', {
        volumes: [config, { name: 'shm', emptyDir: { medium: 'Memory' } }],
        volumeMounts: [{ name: 'settings', mountPath: '/etc/train' }, { name: 'shm', mountPath: '/dev/shm' }, { name: 'settings', mountPath: '/ferryman', subPath: 'a/b' }],
        automountServiceAccountToken: true,
      })],
    };
    assert.equal(validatePipeline(spec), undefined);
    assert.equal(validatePipeline(mounted('/var/run/secrets/kubernetes.io/serviceaccount')), undefined, 'the token directory is free when no token is mounted');
  });

  const cases: Array<{ name: string; spec: PipelineSpec; reason: string; message: string }> = [
    {
      name: 'a mount of a volume the step does not declare',
      spec: { steps: [step('a', { volumes: [config], volumeMounts: [{ name: 'data', mountPath: '/data' }] }), step('b', { volumeMounts: [{ name: 'settings', mountPath: '/etc' }] })] },
      reason: Reasons.UnknownVolume,
      message: 'step "a" mount at "/data" names volume "data", which the step\'s volumes do not declare',
    },
    {
      name: "a mount of another step's volume",
      spec: { steps: [step('a', { volumes: [config] }), step('b', { volumeMounts: [{ name: 'settings', mountPath: '/etc/train' }] })] },
      reason: Reasons.UnknownVolume,
      message: 'step "b" mount at "/etc/train" names volume "settings", which the step\'s volumes do not declare',
    },
    { name: 'a mount at /ferry', spec: mounted('/ferry'), reason: Reasons.InvalidVolumeMount, message: 'step "a" mount at "/ferry": /ferry and what is under it are Ferry\'s own' },
    { name: 'a mount under /ferry', spec: mounted('/ferry/outputs/model'), reason: Reasons.InvalidVolumeMount, message: 'step "a" mount at "/ferry/outputs/model": /ferry and what is under it are Ferry\'s own' },
    {
      name: 'a mount that reaches /ferry through ..',
      spec: mounted('/tmp/../ferry'),
      reason: Reasons.InvalidVolumeMount,
      message: 'step "a" mount at "/tmp/../ferry": a mount path is absolute and normalised (no ., .. or empty segments), and not /',
    },
    { name: 'a mount at /', spec: mounted('/'), reason: Reasons.InvalidVolumeMount, message: 'step "a" mount at "/": a mount path is absolute and normalised (no ., .. or empty segments), and not /' },
    { name: 'a relative mount path', spec: mounted('data'), reason: Reasons.InvalidVolumeMount, message: 'step "a" mount at "data": a mount path is absolute and normalised (no ., .. or empty segments), and not /' },
    {
      name: 'a mount over the token of a step that mounts it',
      spec: mounted('/var/run/secrets/kubernetes.io/serviceaccount', { automountServiceAccountToken: true }),
      reason: Reasons.InvalidVolumeMount,
      message: 'step "a" mount at "/var/run/secrets/kubernetes.io/serviceaccount": the service account token is mounted at /var/run/secrets/kubernetes.io/serviceaccount',
    },
    {
      name: 'a volume named like Ferry\'s own',
      spec: { steps: [step('a', { volumes: [{ name: 'ferry-artifacts', emptyDir: {} }] })] },
      reason: Reasons.InvalidVolume,
      message: 'step "a" volume "ferry-artifacts": names ferry and ferry-* are Ferry\'s own',
    },
    {
      name: 'a volume with two sources',
      spec: { steps: [step('a', { volumes: [{ name: 'both', emptyDir: {}, configMap: { name: 'c' } }] })] },
      reason: Reasons.InvalidVolume,
      message: 'step "a" volume "both": set exactly one of persistentVolumeClaim, configMap, secret or emptyDir',
    },
    {
      name: 'a finally step mounting under /ferry',
      spec: { steps: [step('a')], finally: [step('report', { volumes: [config], volumeMounts: [{ name: 'settings', mountPath: '/ferry/inputs' }] })] },
      reason: Reasons.InvalidVolumeMount,
      message: 'step "report" mount at "/ferry/inputs": /ferry and what is under it are Ferry\'s own',
    },
    {
      name: "a label of Ferry's",
      spec: { podMetadata: { labels: { 'ferry.dev/run': 'other' } }, steps: [step('a')] },
      reason: Reasons.InvalidPodMetadata,
      message: 'podMetadata: label key "ferry.dev/run" cannot be set: it is Ferry\'s own',
    },
    {
      name: 'the managed-by label',
      spec: { podMetadata: { labels: { 'app.kubernetes.io/managed-by': 'helm' } }, steps: [step('a')] },
      reason: Reasons.InvalidPodMetadata,
      message: 'podMetadata: label key "app.kubernetes.io/managed-by" cannot be set: it is Ferry\'s own',
    },
    {
      name: 'an AppArmor annotation (it would loosen the security context)',
      spec: { podMetadata: { annotations: { 'container.apparmor.security.beta.kubernetes.io/step': 'unconfined' } }, steps: [step('a')] },
      reason: Reasons.InvalidPodMetadata,
      message: 'podMetadata: annotation key "container.apparmor.security.beta.kubernetes.io/step" cannot be set: Kubernetes reserves its prefix',
    },
    {
      name: 'a container runtime annotation',
      spec: { podMetadata: { annotations: { 'io.kubernetes.cri-o.Devices': '/dev/fuse' } }, steps: [step('a')] },
      reason: Reasons.InvalidPodMetadata,
      message: 'podMetadata: annotation key "io.kubernetes.cri-o.Devices" cannot be set: container runtimes read it as a setting',
    },
    {
      name: 'an invalid label key',
      spec: { podMetadata: { labels: { 'bad key': 'x' } }, steps: [step('a')] },
      reason: Reasons.InvalidPodMetadata,
      message: 'podMetadata: label key "bad key" is not a valid key (an optional DNS prefix and a name of at most 63 characters)',
    },
  ];
  for (const c of cases) {
    it(`rejects ${c.name} (${c.reason})`, () => {
      assert.deepEqual(validatePipeline(c.spec), { reason: c.reason, message: c.message });
    });
  }
});
