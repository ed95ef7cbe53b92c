// A test server as a child process (fake-gcs-server, SeaweedFS): its output goes to a log file,
// it is killed if the test process exits without stopping it, and stop() asks it to end with
// SIGTERM before SIGKILL after a grace period.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ServerProcess {
  /** True once it exited (or could not be spawned). */
  readonly exited: boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs: number): Promise<void>;
}

export function spawnServerProcess(bin: string, args: string[], options: { logPath: string; cwd?: string }): ServerProcess {
  const fd = openSync(options.logPath, 'a');
  const proc = spawn(bin, args, { ...(options.cwd ? { cwd: options.cwd } : {}), stdio: ['ignore', fd, fd] });
  closeSync(fd); // the child holds its own copy
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    proc.once('exit', () => { exited = true; resolve(); });
    // Spawn failures emit 'error' without 'exit'.
    proc.once('error', (err) => {
      exited = true;
      void writeFile(options.logPath, `spawn ${bin} failed: ${err.message}\n`, { flag: 'a' }).catch(() => undefined);
      resolve();
    });
  });
  // If the test process exits without stop(), don't leak the server.
  const killOnExit = (): void => { if (!exited) proc.kill('SIGKILL'); };
  process.on('exit', killOnExit);
  return {
    get exited() { return exited; },
    async stop(graceMs) {
      if (!exited) {
        proc.kill('SIGTERM');
        // The grace timer is unref'd so that a prompt exit does not keep the test process alive.
        const timedOut = await Promise.race([gone.then(() => false), sleep(graceMs, true, { ref: false })]);
        if (timedOut) { proc.kill('SIGKILL'); await gone; }
      }
      process.off('exit', killOnExit);
    },
  };
}
