// The CRDs on the real API server: they install, and the schema and CEL rules reject
// invalid objects with messages that name the field.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type TestCluster } from '../harness/cluster.ts';

let cluster: TestCluster;
let namespace: string;

before(async () => {
  cluster = connect();
  namespace = await cluster.createNamespace('crds');
});
after(async () => cluster?.cleanup());

const apply = (yaml: string) => cluster.kubectl(['apply', '-n', namespace, '-f', '-'], yaml);

const pipelineYaml = (steps: string, extra = '') => `apiVersion: ferry.dev/v1alpha1
kind: Pipeline
metadata: {name: p-${Math.random().toString(36).slice(2, 8)}}
spec:
${extra}  steps:
${steps}`;

describe('CRDs', () => {
  it('are installed with the printer columns, short names and ferry category', async () => {
    const out = await cluster.kubectlOk(['apply', '--server-side', '-f', 'crds/']);
    assert.match(out, /pipelines.ferry.dev serverside-applied/);
    const resources = await cluster.kubectlOk(['api-resources', '--api-group=ferry.dev', '--no-headers']);
    assert.match(resources, /modelversions\s+mv\s+ferry.dev\/v1alpha1\s+true\s+ModelVersion/);
    assert.match(resources, /pipelineruns\s+fpr,plr\s+ferry.dev\/v1alpha1\s+true\s+PipelineRun/);
    await cluster.kubectlOk(['get', 'ferry', '-n', namespace]);
  });

  it('accept a valid Pipeline', async () => {
    const result = await apply(pipelineYaml('  - {name: a, image: busybox:1.36}\n  - {name: b, image: busybox:1.36, dependsOn: [a]}\n'));
    assert.equal(result.code, 0, result.stderr);
  });

  const cases: Array<[string, string, RegExp]> = [
    ['duplicate step names', '  - {name: a, image: x}\n  - {name: a, image: y}\n', /spec\.steps\[1\]: Duplicate value: \{"name":"a"\}/],
    ['a bad enum', '  - {name: a, image: x, outputs: [{name: o, type: picture}]}\n', /spec\.steps\[0\]\.outputs\[0\]\.type: Unsupported value: "picture": supported values: "dataset", "model", "metrics", "file"/],
    ['a missing image', '  - {name: a}\n', /spec\.steps\[0\]\.image: Required value/],
    ['a self-dependency', '  - {name: a, image: x, dependsOn: [a]}\n', /spec\.steps\[0\]\.dependsOn: Invalid value: .*a step may not depend on itself/],
    ['a bad step name', '  - {name: Train_Model, image: x}\n', /spec\.steps\[0\]\.name: Invalid value: "Train_Model"/],
    ['registering a non-model output', '  - {name: a, image: x, outputs: [{name: o, type: dataset, register: {name: iris}}]}\n', /only outputs of type model can be registered/],
    ['a mount under /ferry', '  - {name: a, image: x, volumes: [{name: v, emptyDir: {}}], volumeMounts: [{name: v, mountPath: /ferry/inputs}]}\n', /spec\.steps\[0\]\.volumeMounts\[0\]\.mountPath: Invalid value: .*\/ferry is Ferry's own: mount elsewhere/],
    ['a mount path that is not normalised', '  - {name: a, image: x, volumes: [{name: v, emptyDir: {}}], volumeMounts: [{name: v, mountPath: /tmp/../ferry}]}\n', /spec\.steps\[0\]\.volumeMounts\[0\]\.mountPath: Invalid value: "\/tmp\/\.\.\/ferry"/],
    ['a volume with two sources', '  - {name: a, image: x, volumes: [{name: v, emptyDir: {}, configMap: {name: c}}]}\n', /set exactly one of persistentVolumeClaim, configMap, secret or emptyDir/],
    ["a volume named like Ferry's", '  - {name: a, image: x, volumes: [{name: ferry-artifacts, emptyDir: {}}]}\n', /spec\.steps\[0\]\.volumes\[0\]\.name: Invalid value: .*volume names ferry and ferry-\* are Ferry's own/],
  ];
  for (const [what, steps, message] of cases) {
    it(`reject a Pipeline with ${what}`, async () => {
      const result = await apply(pipelineYaml(steps));
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, message);
    });
  }

  it('reject duplicate parameter names and an empty step list', async () => {
    const dup = await apply(pipelineYaml('  - {name: a, image: x}\n', '  parameters: [{name: lr, type: int}, {name: lr, type: float}]\n'));
    assert.match(dup.stderr, /spec\.parameters\[1\]: Duplicate value: \{"name":"lr"\}/);
    const empty = await apply(pipelineYaml('    []\n'));
    assert.match(empty.stderr, /spec\.steps: Invalid value: 0: spec\.steps in body should have at least 1 items/);
  });

  it('make a run’s pipelineRef immutable', async () => {
    const run = (pipeline: string) => `apiVersion: ferry.dev/v1alpha1
kind: PipelineRun
metadata: {name: r1}
spec: {pipelineRef: {name: ${pipeline}}}
`;
    assert.equal((await apply(run('one'))).code, 0);
    const changed = await apply(run('two'));
    assert.notEqual(changed.code, 0);
    assert.match(changed.stderr, /pipelineRef is immutable/);
  });

  it('keep a ModelVersion immutable except its stage', async () => {
    const mv = (stage: string, uri: string) => `apiVersion: ferry.dev/v1alpha1
kind: ModelVersion
metadata: {name: iris-v1}
spec:
  modelName: iris
  version: 1
  stage: ${stage}
  artifact: {uri: "${uri}", digest: "sha256:${'a'.repeat(64)}"}
`;
    assert.equal((await apply(mv('None', 'file:///a'))).code, 0);
    assert.equal((await apply(mv('Production', 'file:///a'))).code, 0);
    const moved = await apply(mv('Production', 'file:///b'));
    assert.match(moved.stderr, /artifact is immutable/);
    const badStage = await apply(mv('Live', 'file:///a'));
    assert.match(badStage.stderr, /spec\.stage: Unsupported value: "Live"/);
  });
});
