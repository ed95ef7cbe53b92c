// Leader election timing with an injected clock (node:test's mock timers drive setTimeout and
// Date, and the Clock reads that Date) and an in-memory Lease store that keeps resourceVersions
// and can leave one candidate's requests unanswered.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { CallOptions } from '../kube/client.ts';
import { ApiError } from '../kube/errors.ts';
import { silentLogger } from '../observability/logger.ts';
import type { Clock } from './clock.ts';
import { LeaderElector, type Lease, type LeaseClient } from './leader-election.ts';

const LEASE_DURATION = 4000;
const RENEW_DEADLINE = 3000;
const RETRY_PERIOD = 1000;

interface Request { who: string; verb: string; start: number; end?: number; outcome?: string }

/** One Lease, with resourceVersions and conflicts as the API server keeps them. */
class LeaseStore {
  lease: Lease | undefined;
  private version = 0;
  readonly requests: Request[] = [];
  /** Candidates whose requests get no answer (until aborted). */
  readonly hung = new Set<string>();
  /** Candidates whose requests fail at once (500). */
  readonly failing = new Set<string>();

  clientFor(who: string): LeaseClient {
    const call = <T>(verb: string, options: CallOptions, answer: () => T): Promise<T> => {
      const request: Request = { who, verb, start: Date.now() };
      this.requests.push(request);
      const finish = (outcome: string) => Object.assign(request, { end: Date.now(), outcome });
      if (this.hung.has(who)) {
        return new Promise<T>((_, reject) => {
          options.signal?.addEventListener('abort', () => {
            finish(`aborted: ${(options.signal?.reason as Error | undefined)?.name}`);
            reject(options.signal?.reason as Error);
          }, { once: true });
        });
      }
      return Promise.resolve().then(() => {
        try {
          if (this.failing.has(who)) throw new ApiError(verb, '/leases/ferry', 500, 'InternalError', 'etcd is down');
          const value = answer();
          finish('ok');
          return value;
        } catch (err) {
          finish((err as ApiError).reason);
          throw err;
        }
      });
    };
    const path = '/apis/coordination.k8s.io/v1/namespaces/ns/leases/ferry';
    const get = <T>(options: CallOptions = {}) => call('GET', options, () => {
      if (!this.lease) throw new ApiError('GET', path, 404, 'NotFound', 'not found');
      return structuredClone(this.lease) as T;
    });
    return {
      get: <T>(_r: unknown, _ns: unknown, _name: unknown, options?: CallOptions) => get<T>(options),
      getOrUndefined: async <T>(_r: unknown, _ns: unknown, _name: unknown, options?: CallOptions) => {
        try {
          return await get<T>(options);
        } catch (err) {
          if ((err as ApiError).status === 404) return undefined;
          throw err;
        }
      },
      create: <T extends KubeObject>(_r: unknown, _ns: unknown, object: T, options?: CallOptions) => call('POST', options ?? {}, () => {
        if (this.lease) throw new ApiError('POST', path, 409, 'AlreadyExists', 'exists');
        this.lease = { ...structuredClone(object as unknown as Lease), metadata: { ...object.metadata, resourceVersion: String(++this.version) } };
        return structuredClone(this.lease) as unknown as T;
      }),
      replace: <T extends KubeObject>(_r: unknown, object: T, options?: CallOptions) => call('PUT', options ?? {}, () => {
        if (object.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) throw new ApiError('PUT', path, 409, 'Conflict', 'modified');
        this.lease = { ...structuredClone(object as unknown as Lease), metadata: { ...object.metadata, resourceVersion: String(++this.version) } };
        return structuredClone(this.lease) as unknown as T;
      }),
    } as LeaseClient;
  }
}

/** Reads the mocked Date: the one clock of the elector, its timers and the store. */
const clock: Clock = { now: () => new Date() };

const flush = async () => {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** Moves fake time to `t` ms in 5 ms steps, letting promise chains run between steps. */
async function advanceTo(t: TestContext, to: number, each?: () => void): Promise<void> {
  await flush();
  while (Date.now() < to) {
    t.mock.timers.tick(Math.min(5, to - Date.now()));
    each?.();
    await flush();
  }
}

function candidate(store: LeaseStore, identity: string) {
  const elector = new LeaderElector(
    store.clientFor(identity),
    { namespace: 'ns', name: 'ferry', identity, leaseDurationMs: LEASE_DURATION, renewDeadlineMs: RENEW_DEADLINE, retryPeriodMs: RETRY_PERIOD },
    clock,
    silentLogger,
  );
  const state = { elector, acquiredAt: undefined as number | undefined, lostAt: undefined as number | undefined, leaderAtLost: undefined as boolean | undefined };
  const campaign = () => {
    void elector.acquire(() => {
      state.lostAt = Date.now();
      state.leaderAtLost = elector.isLeader();
    }).then((won) => {
      if (won) state.acquiredAt = Date.now();
    });
  };
  return { ...state, state, campaign };
}

const start = (t: TestContext) => t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });

describe('LeaderElector', () => {
  it('a standby does not acquire before it has seen the record unchanged for a lease duration', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    a.campaign();
    await flush();
    assert.equal(a.state.acquiredAt, 0, 'a created the Lease');
    store.hung.add('a'); // a stalls: it never renews again
    await advanceTo(t, 500);
    b.campaign();
    let bFirstLeader: number | undefined;
    await advanceTo(t, 8000, () => {
      if (bFirstLeader === undefined && b.state.elector.isLeader()) bFirstLeader = Date.now();
    });
    // b saw a's record first at 500: a lease duration later is 4500, and b retries every second from 500.
    assert.equal(b.state.acquiredAt, 4500);
    assert.ok(bFirstLeader !== undefined && bFirstLeader >= 500 + LEASE_DURATION);
    assert.equal(a.state.lostAt, RENEW_DEADLINE, 'a stopped at its renew deadline');
    assert.ok(a.state.lostAt < b.state.acquiredAt, 'no overlap');
    assert.equal(store.lease?.spec.holderIdentity, 'b');
    assert.equal(store.lease?.spec.leaseTransitions, 1);
    await a.state.elector.release();
    await b.state.elector.release();
  });

  it('a standby never acquires while the leader renews', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    a.campaign();
    await advanceTo(t, 300);
    b.campaign();
    await advanceTo(t, 20_000);
    assert.equal(b.state.acquiredAt, undefined);
    assert.equal(a.state.lostAt, undefined);
    assert.equal(a.state.elector.isLeader(), true);
    const renewals = store.requests.filter((r) => r.who === 'a' && r.verb === 'PUT' && r.outcome === 'ok');
    assert.equal(renewals.length, 20, 'a renewed every retry period');
    await a.state.elector.release();
    await b.state.elector.release();
  });

  it('a leader whose renewals hang is not leader at its renew deadline, before a lease duration; the hung renewal is aborted then', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    a.campaign();
    await advanceTo(t, 1500); // acquired at 0, renewed at 1000
    assert.ok(store.requests.some((r) => r.who === 'a' && r.verb === 'PUT' && r.start === 1000 && r.outcome === 'ok'));
    store.hung.add('a'); // the renewal at 2000 never gets an answer
    await advanceTo(t, 1000 + RENEW_DEADLINE - 5);
    assert.equal(a.state.elector.isLeader(), true, 'still leader just before the deadline');
    assert.equal(a.state.lostAt, undefined);

    // One tick onto the deadline, no promise allowed to run: the flag is already down.
    t.mock.timers.tick(5);
    assert.equal(Date.now(), 1000 + RENEW_DEADLINE);
    assert.equal(a.state.elector.isLeader(), false, 'not leader at the deadline, synchronously');
    assert.equal(a.state.lostAt, 1000 + RENEW_DEADLINE, 'onLost called at the deadline');
    assert.equal(a.state.leaderAtLost, false, 'isLeader() was already false when onLost ran');
    assert.ok(a.state.lostAt < 1000 + LEASE_DURATION);
    await flush();

    const hung = store.requests.find((r) => r.who === 'a' && r.start === 2000);
    assert.deepEqual(hung && { verb: hung.verb, end: hung.end, outcome: hung.outcome },
      { verb: 'PUT', end: 1000 + RENEW_DEADLINE, outcome: 'aborted: TimeoutError' },
      'the renewal request started at 2000 was aborted at the deadline 1000 + renewDeadline');
    await advanceTo(t, 10_000);
    assert.equal(store.requests.filter((r) => r.who === 'a' && r.start > 2000).length, 0, 'a lost leader stops renewing');
    await a.state.elector.release();
  });

  it('stays leader through a failed renewal when the next one succeeds before the deadline; a leader renews with one write, reading the Lease only after a failed one', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    a.campaign();
    await advanceTo(t, 1500); // renewed at 1000: leader until 4000
    store.failing.add('a'); // the renewal at 2000 fails
    await advanceTo(t, 2500);
    store.failing.delete('a'); // the one at 3000 succeeds: leader until 6000
    await advanceTo(t, 5995);
    assert.equal(a.state.lostAt, undefined);
    assert.equal(a.state.elector.isLeader(), true);
    assert.deepEqual(
      store.requests.filter((r) => r.who === 'a').map((r) => [r.start, r.verb, r.outcome]),
      [
        [0, 'GET', 'NotFound'], [0, 'POST', 'ok'], [1000, 'PUT', 'ok'],
        [2000, 'PUT', 'InternalError'], [2000, 'GET', 'InternalError'],
        [3000, 'GET', 'ok'], [3000, 'PUT', 'ok'], [4000, 'PUT', 'ok'], [5000, 'PUT', 'ok'],
      ],
    );
    await a.state.elector.release();
  });

  it('a candidate\'s acquire request is aborted renewDeadline after it started', async (t) => {
    start(t);
    const store = new LeaseStore();
    const b = candidate(store, 'b');
    store.hung.add('b');
    b.campaign();
    await advanceTo(t, RENEW_DEADLINE + 10);
    const first = store.requests.find((r) => r.who === 'b');
    assert.deepEqual(first && [first.start, first.end, first.outcome], [0, RENEW_DEADLINE, 'aborted: TimeoutError']);
    assert.equal(b.state.acquiredAt, undefined);
    await b.state.elector.release();
  });

  it('release hands over at once: the standby takes the Lease at its next retry', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    a.campaign();
    await advanceTo(t, 200);
    b.campaign();
    await advanceTo(t, 2100);
    const releasing = a.state.elector.release();
    assert.equal(a.state.elector.isLeader(), false, 'a stops leading before it writes the release');
    await releasing;
    assert.equal(store.lease?.spec.holderIdentity, null);
    await advanceTo(t, 3300);
    assert.equal(b.state.acquiredAt, 2200, 'b acquired at its next retry, not a lease duration later');
    assert.equal(a.state.lostAt, undefined, 'a released; it did not lose');
    await b.state.elector.release();
  });

  it('a leader that finds the Lease held by another stops at once', async (t) => {
    start(t);
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    a.campaign();
    await advanceTo(t, 500);
    // The intruder's write moves the resourceVersion, as the API server's would: a's renewal conflicts, then reads.
    store.lease = { metadata: { ...store.lease!.metadata, resourceVersion: '999' }, spec: { ...store.lease!.spec, holderIdentity: 'intruder' } } as Lease;
    await advanceTo(t, 1000);
    assert.equal(a.state.lostAt, 1000);
    assert.equal(a.state.elector.isLeader(), false);
    await a.state.elector.release();
  });
});
