// The pinned helm for chart tests and scripts/render-manifests.ts: built once from
// test/tools/helm (cached by version outside the repo), run with values given as objects,
// and its rendered YAML split into objects.
import { spawn } from 'node:child_process';
import { runBuildScript } from './binaries.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';

const ROOT = join(import.meta.dirname, '..', '..');
export const CHART_DIR = join(ROOT, 'charts', 'ferry');
const BUILD_SCRIPT = join(ROOT, 'test', 'tools', 'helm', 'build-helm.sh');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCommand(command: string, args: string[], options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** Builds helm if needed (minutes, once) and returns the binary's path. */
export async function ensureHelm(): Promise<string> {
  return join(await runBuildScript(BUILD_SCRIPT), 'helm');
}

export interface KubeManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** The objects in a multi-document YAML text, in order (empty documents dropped). */
export function parseManifests(text: string): KubeManifest[] {
  return (loadAll(text) as unknown[]).filter((d): d is KubeManifest => typeof d === 'object' && d !== null);
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  values?: Record<string, unknown>;
  includeCrds?: boolean;
}

export class Helm {
  readonly path: string;

  constructor(path: string) {
    this.path = path;
  }

  run(args: string[]): Promise<RunResult> {
    // A private HOME-like config, so nothing from ~/.config/helm or a repo cache leaks in.
    return runCommand(this.path, args, { env: { ...process.env, HELM_CONFIG_HOME: join(tmpdir(), 'ferry-helm-config'), HELM_CACHE_HOME: join(tmpdir(), 'ferry-helm-cache') } });
  }

  /** Runs helm with the values written to a temporary file (`-f`), which it then removes. */
  async withValues(args: string[], values: Record<string, unknown> | undefined): Promise<RunResult> {
    if (!values) return this.run(args);
    const dir = await mkdtemp(join(tmpdir(), 'ferry-helm-values-'));
    try {
      const file = join(dir, 'values.json'); // JSON is YAML
      await writeFile(file, JSON.stringify(values));
      return await this.run([...args, '-f', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  lint(values?: Record<string, unknown>): Promise<RunResult> {
    return this.withValues(['lint', '--strict', CHART_DIR], values);
  }

  /** `helm template`, throwing with helm's message when it fails. */
  async template(options: RenderOptions = {}): Promise<string> {
    const result = await this.tryTemplate(options);
    if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr.trim()}`);
    return result.stdout;
  }

  tryTemplate({ release = 'ferry', namespace = 'ferry-system', values, includeCrds = false }: RenderOptions = {}): Promise<RunResult> {
    const args = ['template', release, CHART_DIR, '--namespace', namespace];
    if (includeCrds) args.push('--include-crds');
    return this.withValues(args, values);
  }
}
