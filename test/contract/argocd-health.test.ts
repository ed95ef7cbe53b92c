// Contract: the Argo CD health checks (manifests/argocd/*-health.lua) give the right status
// for sample PipelineRuns and ModelVersions, run by a real Lua interpreter the way Argo CD
// runs them (the object as the global `obj`, the returned table read as status and message),
// and manifests/argocd/argocd-cm-patch.yaml carries exactly those scripts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { load } from 'js-yaml';
import { ARGOCD_CM_PATCH, ARGOCD_HEALTH_CHECKS, renderArgoCdPatch } from '../../scripts/render-manifests.ts';
import { runCommand } from '../harness/helm.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'argocd');

/** Lua interpreters to run the checks with: lua5.4 always (installed when missing), lua5.1 too when present (Argo CD's gopher-lua speaks 5.1). */
function ensureLua(): string[] {
  const has = (name: string) => {
    try {
      execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!has('lua5.4')) {
    // NOTE: scripts/setup.sh should install it; this keeps a bare machine working.
    process.stderr.write('argocd-health: installing Debian package lua5.4 ...\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('sh', ['-c', 'apt-get install -y -qq --no-install-recommends lua5.4 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends lua5.4)'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  }
  return ['lua5.4', 'lua5.1'].filter(has);
}

/** A Lua expression for a JSON value; strings escaped byte by byte, so any Lua 5.x reads them. */
function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  if (typeof value === 'string') {
    let out = '"';
    for (const byte of Buffer.from(value, 'utf8')) {
      out += byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c ? String.fromCharCode(byte) : `\\${byte}`;
    }
    return `${out}"`;
  }
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  if (value instanceof Date) return toLua(value.toISOString().replace(/\.000Z$/, 'Z'));
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `[${toLua(k)}] = ${toLua(v)}`).join(', ')}}`;
}

/** Runs a health check as Argo CD does: `obj` is a global, the chunk returns the hs table. */
async function health(lua: string, script: string, object: unknown): Promise<{ status: string; message: string }> {
  const program = `obj = ${toLua(object)}\nlocal function check()\n${script}\nend\nlocal hs = check()\nio.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")\n`;
  const result = await runCommand(lua, ['-'], { input: program });
  assert.equal(result.code, 0, `${lua} failed: ${result.stderr}`);
  const [status = '', message = ''] = result.stdout.split('\n');
  return { status, message };
}

const scriptOf = async (kind: 'PipelineRun' | 'ModelVersion') =>
  readFile(ARGOCD_HEALTH_CHECKS.find((c) => c.key.endsWith(`_${kind}`))!.file, 'utf8');

// [fixture, expected status, expected message (exact, or a pattern)]
const CASES: Record<'PipelineRun' | 'ModelVersion', Array<[string, string, string | RegExp]>> = {
  PipelineRun: [
    ['pipelinerun-new.yaml', 'Progressing', 'Waiting for the Ferry operator to start the run'],
    ['pipelinerun-pending.yaml', 'Progressing', 'Pending (0/4 steps): waiting for 4 steps'],
    ['pipelinerun-running.yaml', 'Progressing', 'Running (1/4 steps)'],
    ['pipelinerun-succeeded.yaml', 'Healthy', 'Succeeded (4/4 steps)'],
    ['pipelinerun-failed.yaml', 'Degraded', 'Failed (2/4 steps): step "train" failed: container step exited with code 3: loss is NaN after 3 attempts'],
    ['pipelinerun-timed-out.yaml', 'Degraded', 'TimedOut (1/4 steps): the run exceeded its timeout of 600s'],
    ['pipelinerun-invalid-pipeline.yaml', 'Degraded', 'InvalidPipeline: pipeline "iris-train" is not valid: dependency cycle: train → report → train'],
    ['pipelinerun-cancelled.yaml', 'Degraded', 'Cancelled (1/4 steps): cancelled by spec.cancel'],
  ],
  ModelVersion: [
    ['modelversion-new.yaml', 'Progressing', 'Waiting for the Ferry operator to register the model version'],
    ['modelversion-ready.yaml', 'Healthy', 'version 3 of model iris is in Production'],
    ['modelversion-not-ready.yaml', 'Degraded', /^artifact file:\/\/\/var\/lib\/ferry\/artifacts\/blobs\/sha256\/9a8b is missing/],
    ['modelversion-unknown.yaml', 'Progressing', 'Waiting for the model version to become ready'],
    ['modelversion-stage-change-pending.yaml', 'Progressing', 'Waiting for the Ferry operator to act on generation 3'],
  ],
};

let interpreters: string[] = [];

before(() => {
  interpreters = ensureLua();
});

describe('Argo CD health checks', () => {
  for (const kind of ['PipelineRun', 'ModelVersion'] as const) {
    describe(kind, () => {
      for (const [fixture, status, message] of CASES[kind]) {
        it(`${fixture} is ${status}`, async () => {
          const object = load(await readFile(join(FIXTURES, fixture), 'utf8')) as { kind: string };
          assert.equal(object.kind, kind);
          const script = await scriptOf(kind);
          assert.ok(interpreters.includes('lua5.4'), 'lua5.4 is installed');
          for (const lua of interpreters) {
            const hs = await health(lua, script, object);
            assert.equal(hs.status, status, `${lua}: ${hs.message}`);
            if (typeof message === 'string') assert.equal(hs.message, message, lua);
            else assert.match(hs.message, message, lua);
          }
        });
      }
    });
  }

  it('covers every sample object', async () => {
    const tested = new Set([...CASES.PipelineRun, ...CASES.ModelVersion].map(([f]) => f));
    assert.deepEqual((await readdir(FIXTURES)).filter((f) => !tested.has(f)), []);
  });

  it('sticks to what Argo CD\'s Lua 5.1 (gopher-lua) sandbox offers', async () => {
    for (const check of ARGOCD_HEALTH_CHECKS) {
      const code = (await readFile(check.file, 'utf8')).replace(/--.*$/gm, '');
      assert.doesNotMatch(code, /\bgoto\b|\/\/|\bos\.|\bio\.|\brequire\b|\bstring\.format\b|<const>|<close>/, check.file);
    }
  });

  it('argocd-cm-patch.yaml carries exactly the Lua files (run npm run manifests when this fails)', async () => {
    const text = await readFile(ARGOCD_CM_PATCH, 'utf8');
    assert.equal(text, await renderArgoCdPatch());
    const patch = load(text) as { metadata: { name: string; namespace: string }; data: Record<string, string> };
    assert.deepEqual([patch.metadata.name, patch.metadata.namespace], ['argocd-cm', 'argocd']);
    for (const check of ARGOCD_HEALTH_CHECKS) assert.equal(patch.data[check.key], await readFile(check.file, 'utf8'));
  });
});
