import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAILURE_CAUSES, type FailureCause } from './pod-status.ts';
import { DEFAULT_FAILURE_SETTINGS, decideRetry, retryDelaySeconds, type Retries, type RetryPolicy } from './retry-policy.ts';

const settings = { maxInfrastructureRetries: 3 };
const INFRASTRUCTURE: FailureCause[] = ['Evicted', 'Preempted', 'NodeLost'];

describe('decideRetry: every policy × cause, first attempt failed, one retry allowed', () => {
  // ✓ retried using retries.limit, free: retried without using it, ·: not retried.
  const table: Record<RetryPolicy, Record<FailureCause, '✓' | 'free' | '·'>> = {
    Always: {
      Error: '✓', OOMKilled: '✓', Evicted: 'free', Preempted: 'free', NodeLost: 'free',
      ImagePullFailed: '·', Unschedulable: '·', DeadlineExceeded: '✓', AgentFailed: '✓',
    },
    OnError: {
      Error: '✓', OOMKilled: '✓', Evicted: 'free', Preempted: 'free', NodeLost: 'free',
      ImagePullFailed: '·', Unschedulable: '·', DeadlineExceeded: '·', AgentFailed: '·',
    },
    OnInfrastructure: {
      Error: '·', OOMKilled: '·', Evicted: 'free', Preempted: 'free', NodeLost: 'free',
      ImagePullFailed: '·', Unschedulable: '·', DeadlineExceeded: '·', AgentFailed: '·',
    },
  };
  for (const [policy, row] of Object.entries(table) as Array<[RetryPolicy, Record<FailureCause, string>]>) {
    it(`the table covers every cause for ${policy}`, () => assert.deepEqual(Object.keys(row).sort(), [...FAILURE_CAUSES].sort()));
    for (const cause of FAILURE_CAUSES) {
      it(`${policy} × ${cause} → ${row[cause]}`, () => {
        const decision = decideRetry({ limit: 1, policy, backoffSeconds: 5 }, cause, 1, 0, settings);
        if (row[cause] === '·') {
          assert.equal(decision.retry, false);
          return;
        }
        assert.deepEqual(decision, { retry: true, delaySeconds: 5, consumesRetry: row[cause] === '✓' });
      });
    }
  }

  it('no policy is Always', () => {
    for (const cause of FAILURE_CAUSES) {
      assert.deepEqual(decideRetry({ limit: 1 }, cause, 1, 0, settings), decideRetry({ limit: 1, policy: 'Always' }, cause, 1, 0, settings), cause);
    }
  });
});

describe('decideRetry: the limit, and infrastructure losses beside it', () => {
  it('the limit counts retries that used it: attempts − 1 − infrastructureRetries', () => {
    const retries: Retries = { limit: 2, backoffSeconds: 1 };
    assert.equal(decideRetry(retries, 'Error', 1, 0, settings).retry, true);
    assert.equal(decideRetry(retries, 'Error', 2, 0, settings).retry, true);
    assert.deepEqual(decideRetry(retries, 'Error', 3, 0, settings), { retry: false, why: 'all 2 retries used' });
    // Four attempts, one retried free after an eviction: two retries used, none left.
    assert.equal(decideRetry(retries, 'Error', 4, 1, settings).retry, false);
    // Four attempts, two retried free: one retry used, one left (the delay still grows with every failure).
    assert.deepEqual(decideRetry(retries, 'Error', 4, 2, settings), { retry: true, delaySeconds: 8, consumesRetry: true });
    assert.equal(decideRetry(retries, 'Error', 5, 2, settings).retry, false);
  });

  it('limit 0 retries nothing but infrastructure losses', () => {
    assert.deepEqual(decideRetry({ limit: 0 }, 'Error', 1, 0, settings), { retry: false, why: 'no retries allowed' });
    assert.deepEqual(decideRetry(undefined, 'OOMKilled', 1, 0, settings), { retry: false, why: 'no retries allowed' });
    for (const cause of INFRASTRUCTURE) assert.equal(decideRetry(undefined, cause, 1, 0, settings).retry, true, cause);
  });

  it('infrastructure losses are retried free up to --max-infrastructure-retries, whatever the policy', () => {
    for (const policy of ['Always', 'OnError', 'OnInfrastructure'] as const) {
      for (const cause of INFRASTRUCTURE) {
        for (let free = 0; free < 3; free++) {
          const decision = decideRetry({ limit: 0, policy }, cause, free + 1, free, settings);
          assert.equal(decision.retry && !decision.consumesRetry, true, `${policy} ${cause} #${free + 1}`);
        }
      }
    }
  });

  it('past the free ones, an infrastructure loss is one more failure for the policy', () => {
    // Always and OnInfrastructure use the limit; OnError does not retry it.
    assert.deepEqual(decideRetry({ limit: 1, backoffSeconds: 1 }, 'Evicted', 4, 3, settings), { retry: true, delaySeconds: 8, consumesRetry: true });
    assert.deepEqual(decideRetry({ limit: 1, policy: 'OnInfrastructure', backoffSeconds: 1 }, 'NodeLost', 4, 3, settings), { retry: true, delaySeconds: 8, consumesRetry: true });
    assert.deepEqual(decideRetry({ limit: 1, policy: 'OnError' }, 'Preempted', 4, 3, settings), {
      retry: false, why: 'retries.policy OnError does not retry Preempted (after 3 free retries of infrastructure losses)',
    });
    assert.deepEqual(decideRetry({ limit: 0 }, 'Evicted', 4, 3, settings), { retry: false, why: 'no retries allowed (after 3 free retries of infrastructure losses)' });
  });

  it('--max-infrastructure-retries=0 makes infrastructure losses ordinary failures', () => {
    assert.equal(decideRetry({ limit: 0 }, 'Evicted', 1, 0, { maxInfrastructureRetries: 0 }).retry, false);
    assert.deepEqual(decideRetry({ limit: 1 }, 'Evicted', 1, 0, { maxInfrastructureRetries: 0 }), { retry: true, delaySeconds: 10, consumesRetry: true });
  });

  it('an image that cannot be pulled and a Pod no node can run are never retried, even with retries left', () => {
    for (const cause of ['ImagePullFailed', 'Unschedulable'] as const) {
      assert.deepEqual(decideRetry({ limit: 20 }, cause, 1, 0, settings), { retry: false, why: `${cause} is never retried` });
    }
  });

  it('says why a policy declines', () => {
    assert.deepEqual(decideRetry({ limit: 1, policy: 'OnInfrastructure' }, 'OOMKilled', 1, 0, settings), { retry: false, why: 'retries.policy OnInfrastructure does not retry OOMKilled' });
  });

  it('the defaults are those of config.ts', () => {
    assert.deepEqual({ ...DEFAULT_FAILURE_SETTINGS }, { imagePullTimeoutSeconds: 300, unschedulableTimeoutSeconds: 600, maxInfrastructureRetries: 3 });
  });
});

describe('retryDelaySeconds', () => {
  const cases: Array<[string, Retries | undefined, number, number]> = [
    ['defaults: 1st retry 10s', undefined, 1, 10],
    ['defaults: 2nd retry doubled', undefined, 2, 20],
    ['defaults: 3rd retry doubled again', undefined, 3, 40],
    ['defaults: capped at 300s', undefined, 6, 300],
    ['0 failures is the base delay', { limit: 3, backoffSeconds: 5 }, 0, 5],
    ['1st retry is backoffSeconds', { limit: 3, backoffSeconds: 5, maxBackoffSeconds: 12 }, 1, 5],
    ['2nd retry doubles', { limit: 3, backoffSeconds: 5, maxBackoffSeconds: 12 }, 2, 10],
    ['3rd retry is capped by maxBackoffSeconds', { limit: 3, backoffSeconds: 5, maxBackoffSeconds: 12 }, 3, 12],
    ['a huge failure count stays capped', { limit: 20, backoffSeconds: 3600, maxBackoffSeconds: 86400 }, 2000, 86400],
    ['factor 1 is a constant delay', { limit: 5, backoffSeconds: 7, factor: 1 }, 5, 7],
    ['factor 3 triples', { limit: 5, backoffSeconds: 2, factor: 3 }, 3, 18],
    ['factor 1.5 grows by half', { limit: 5, backoffSeconds: 4, factor: 1.5 }, 3, 9],
    ['factor 10 is capped by maxBackoffSeconds', { limit: 5, backoffSeconds: 10, factor: 10, maxBackoffSeconds: 600 }, 3, 600],
    ['factor 10 with a huge failure count stays capped', { limit: 20, backoffSeconds: 10, factor: 10 }, 5000, 300],
  ];
  for (const [name, retries, failures, seconds] of cases) {
    it(name, () => assert.equal(retryDelaySeconds({ retries }, failures), seconds));
  }

  it('decideRetry waits the delay of the failures so far, free ones included', () => {
    const retries: Retries = { limit: 3, backoffSeconds: 2, factor: 3 };
    assert.deepEqual(decideRetry(retries, 'Evicted', 1, 0, settings), { retry: true, delaySeconds: 2, consumesRetry: false });
    assert.deepEqual(decideRetry(retries, 'Error', 2, 1, settings), { retry: true, delaySeconds: 6, consumesRetry: true });
    assert.deepEqual(decideRetry(retries, 'Error', 3, 1, settings), { retry: true, delaySeconds: 18, consumesRetry: true });
  });
});
