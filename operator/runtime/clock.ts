// Time as a dependency, so that pure planning code and tests can fix "now".
export interface Clock {
  now(): Date;
  /**
   * A monotonic reading in milliseconds, for measuring how long something took: a step of the
   * wall clock (NTP, a VM resumed) must not look like elapsed time. Without it, durations use now().
   */
  monotonicMs?(): number;
}

export const systemClock: Clock = { now: () => new Date(), monotonicMs: () => performance.now() };

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
