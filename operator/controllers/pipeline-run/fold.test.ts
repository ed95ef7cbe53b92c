import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONDITION_MODELS_REGISTERED, Reasons, findCondition } from '../../api/v1alpha1/conditions.ts';
import type { PipelineRunStatus } from '../../api/v1alpha1/pipeline-run.ts';
import { foldPass, type Pass } from './fold.ts';
import { NOW, at } from './testing.ts';

const succeeded = (name: string): NonNullable<PipelineRunStatus['steps']>[number] =>
  ({ name, phase: 'Succeeded', attempts: 1, outputs: [{ name: 'model', uri: `file:///s/${name}`, digest: `sha256:${'a'.repeat(64)}` }] });
const passWith = (status: PipelineRunStatus): Pass => ({ status, delete: [], events: [] });
const registeredCondition = (pass: Pass) => findCondition(pass.status.conditions, CONDITION_MODELS_REGISTERED);

describe('foldPass: registration', () => {
  const status: PipelineRunStatus = { phase: 'Succeeded', steps: [succeeded('train'), succeeded('tune')] };

  it('records the versions in their steps and says True naming every one, with no Event', () => {
    const models = new Map([['train', [{ name: 'iris', version: 3 }]], ['tune', [{ name: 'iris-tuned', version: 1 }]]]);
    const next = foldPass(passWith(status), { registration: { models, created: [] } }, { pods: [], now: NOW });
    assert.deepEqual(next.status.steps?.map((s) => s.models), [[{ name: 'iris', version: 3 }], [{ name: 'iris-tuned', version: 1 }]]);
    const c = registeredCondition(next);
    assert.deepEqual([c?.status, c?.reason, c?.message], ['True', Reasons.Registered, 'registered iris-v3, iris-tuned-v1']);
    assert.deepEqual(next.events, []);
    assert.equal(status.steps?.[0]?.models, undefined, 'the input status is not changed');
  });

  it('says False with the refusal and one Warning Event per new refusal, none for the same one again', () => {
    const refused = { models: new Map(), created: [], refused: "cannot register the run's models: denied" };
    const first = foldPass(passWith(status), { registration: refused }, { pods: [], now: NOW });
    const c = registeredCondition(first);
    assert.deepEqual([c?.status, c?.reason, c?.message], ['False', Reasons.RegistrationFailed, "cannot register the run's models: denied"]);
    assert.deepEqual(first.events.map((e) => [e.type, e.reason]), [['Warning', 'RegistrationFailed']]);
    const again = foldPass(passWith(first.status), { registration: refused }, { pods: [], now: at(30) });
    assert.deepEqual(again.events, [], 'the same refusal again is not announced again');
    assert.equal(registeredCondition(again)?.lastTransitionTime, c?.lastTransitionTime);
    const other = foldPass(passWith(first.status), { registration: { ...refused, refused: 'quota exceeded' } }, { pods: [], now: at(60) });
    assert.equal(other.events.length, 1, 'a new refusal is');
  });

  it('puts a cache-miss explanation on a step that runs, not on one that finished', () => {
    const running: PipelineRunStatus = { phase: 'Running', steps: [{ name: 'a', phase: 'Running', attempts: 1 }, succeeded('b')] };
    const explanations = new Map([['a', 'cache miss: image differs from run "r0"'], ['b', 'cache miss: no earlier execution of this step']]);
    const next = foldPass(passWith(running), { explanations }, { pods: [], now: NOW });
    assert.deepEqual(next.status.steps?.map((s) => s.message), ['cache miss: image differs from run "r0"', undefined]);
  });
});
