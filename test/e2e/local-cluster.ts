// What the end-to-end tests share about the local cluster they run on: its work dir (registry
// data kept between runs), verbose logging, kubectl that must succeed, and the host path of an
// object in the chart's file:// store (the hostPath volume behind it).
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { LocalSetup } from '../../scripts/demo/local.ts';

/** One work dir for every e2e file: the machine's one cluster slot means a running demo cluster must be stopped first. */
export const E2E_WORK_DIR = join(process.env.FERRY_CACHE ?? join(homedir(), '.cache', 'ferry'), 'e2e-cluster');

export const e2eLog = (line: string): void => { if (process.env.FERRY_TEST_VERBOSE) console.error(`[e2e] ${line}`); };

export function ready(setup: LocalSetup | undefined): LocalSetup {
  assert.ok(setup, 'the local cluster and Ferry did not come up');
  return setup;
}

export async function kubectlOk(setup: LocalSetup | undefined, args: string[]): Promise<string> {
  const result = await ready(setup).cluster.kubectl(args);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

const STORE_PREFIX = 'file:///var/lib/ferry/artifacts/';

/** The host file behind a file:///var/lib/ferry/artifacts/… URI. */
export function hostPathOf(setup: LocalSetup | undefined, uri: string): string {
  assert.ok(uri.startsWith(STORE_PREFIX), `${uri} is not in the chart's file:// store`);
  return join(ready(setup).layout.artifacts, uri.slice(STORE_PREFIX.length));
}
