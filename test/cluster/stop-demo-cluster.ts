// Before the local cluster and end-to-end tests (scripts/test-e2e.sh): a machine holds one
// cluster, and `npm run demo` leaves its own running for the user to look around. The README
// says demo first, then `npm test`; so the tests stop the demo's cluster, and say so, instead
// of failing on "another local cluster runs". Clusters of other work dirs (a developer's own
// `npm run cluster -- up --dir …`) are left alone: the tests then fail with that message.
import { readOwner, teardown } from './cleanup.ts';
import { defaultWorkDir, layoutOf } from './layout.ts';
import { recordedDaemons } from './processes.ts';

const say = (line: string) => process.stderr.write(`[test] ${line}\n`);

const owner = await readOwner();
const demoDir = defaultWorkDir();
if (owner?.workDir === demoDir && (await recordedDaemons(layoutOf(demoDir))).length > 0) {
  say(`stopping the local cluster the demo left running in ${demoDir} (a machine holds one cluster; npm run demo starts it again)`);
  const report = await teardown(layoutOf(demoDir), (line) => say(`    ${line}`));
  if (report.failed.length > 0) {
    say(`could not clean up the demo's cluster:\n${report.failed.join('\n')}`);
    process.exitCode = 1;
  } else {
    say(`demo cluster stopped: ${report.removed.length} things removed`);
  }
}
