// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the leader renews
// the Lease every retry period; others take it over only after they have seen it unchanged
// for a whole lease duration (their own clock, so clock skew between nodes does not matter).
// Writes carry resourceVersion, so two candidates can never both win the same round.
//
// NOTE: leadership cannot overlap. A leader leads until renewDeadline after the START of its
// last successful renewal (or acquire) request; every request is aborted at that deadline and
// a timer flips isLeader() to false at it, whatever a hung request does. A standby measures its
// lease duration from when it saw that renewal's record, which is later, and renewDeadline <
// leaseDuration: the old leader has stopped (its writes are fenced on isLeader()) before anyone
// can acquire. Every time here is the injected Clock's.
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { KubeClient } from '../kube/client.ts';
import { errorMessage, isAlreadyExists, isConflict } from '../kube/errors.ts';
import { LEASES } from '../kube/resources.ts';
import type { Logger } from '../observability/logger.ts';
import { sleep, type Clock } from './clock.ts';

export interface Lease extends KubeObject {
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** The requests the elector makes: the (unfenced) Lease client, or an in-memory store in tests. */
export type LeaseClient = Pick<KubeClient, 'get' | 'getOrUndefined' | 'create' | 'replace'>;

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

const deadlinePassed = () => new DOMException('the renew deadline passed', 'TimeoutError');

export class LeaderElector {
  private readonly client: LeaseClient;
  private readonly options: LeaderElectionOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** The Lease record last seen and when (clock ms) it was first seen so. */
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  /** Clock ms at which leadership ends unless a renewal succeeds: renewDeadline after the start of the last good one. */
  private deadline = 0;
  private deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  /** The acquire or renewal request in flight, aborted at the deadline and on release. */
  private inflight: AbortController | undefined;
  /** Aborted when this term of leadership ends (leadershipSignal). */
  private term = new AbortController();
  private onLost: () => void = () => {};
  /** The Lease as this replica last wrote it: what a leader renews without reading it first. */
  private written: Lease | undefined;
  private readonly stopController = new AbortController();

  constructor(client: LeaseClient, options: LeaderElectionOptions, clock: Clock, log: Logger) {
    if (!(options.renewDeadlineMs < options.leaseDurationMs)) throw new Error('the renew deadline must be shorter than the lease duration');
    this.client = client;
    this.options = options;
    this.clock = clock;
    this.log = log.child({ lease: `${options.namespace}/${options.name}`, identity: options.identity });
  }

  /** True while this replica leads: false from the renew deadline on, even before a timer or a hung request says so. */
  isLeader(): boolean {
    return this.leading && this.now() < this.deadline;
  }

  /** Aborted when the current (or next) term of leadership ends: for fenced writes still in flight. */
  leadershipSignal(): AbortSignal {
    return this.term.signal;
  }

  /**
   * Campaigns until this replica leads, then keeps renewing. Resolves once leadership is
   * acquired; `onLost` is called if it is lost later (isLeader() is already false then).
   */
  async acquire(onLost: () => void): Promise<boolean> {
    this.onLost = onLost;
    const signal = this.stopController.signal;
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        this.log.info('became leader');
        void this.renewLoop().catch((err: unknown) => this.log.error('lease renewal crashed', { error: errorMessage(err) }));
        return true;
      }
      await sleep(this.options.retryPeriodMs, signal);
    }
    return false;
  }

  /** Stops campaigning; a leader stops leading, then gives the Lease up so a standby takes over at once. */
  async release(): Promise<void> {
    this.stopController.abort();
    this.inflight?.abort(new DOMException('released', 'AbortError'));
    clearTimeout(this.deadlineTimer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const signal = AbortSignal.timeout(this.options.renewDeadlineMs);
      const lease = await this.client.get<Lease>(LEASES, this.options.namespace, this.options.name, { signal });
      if (lease.spec.holderIdentity !== this.options.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(this.clock.now()) };
      await this.client.replace(LEASES, lease, { signal });
      this.log.info('released leadership');
    } catch (err) {
      this.log.warn('could not release the lease', { error: errorMessage(err) });
    }
  }

  /** Time for every duration the elector measures (lease expiry, renew deadline): monotonic where the clock has it, as client-go's. */
  private now(): number {
    return this.clock.monotonicMs?.() ?? this.clock.now().getTime();
  }

  private async renewLoop(): Promise<void> {
    const signal = this.stopController.signal;
    while (!signal.aborted && this.leading) {
      await sleep(this.options.retryPeriodMs, signal);
      if (signal.aborted || !this.leading) return;
      // A failed renewal is retried every retry period until the deadline timer ends leadership.
      await this.tryAcquireOrRenew();
    }
  }

  /** A successful request that started at `started` (clock ms) extends leadership to renewDeadline after it. */
  private renewed(started: number): boolean {
    const deadline = started + this.options.renewDeadlineMs;
    if (this.stopController.signal.aborted || deadline <= this.now()) return false;
    if (!this.leading && this.term.signal.aborted) this.term = new AbortController(); // a new term
    this.leading = true;
    this.deadline = deadline;
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.lose('the renew deadline passed'), deadline - this.now());
    return true;
  }

  private lose(reason: string): void {
    if (!this.leading) return;
    this.leading = false;
    clearTimeout(this.deadlineTimer);
    this.term.abort(deadlinePassed()); // writes of this term still in flight are cut off
    this.inflight?.abort(deadlinePassed());
    this.log.warn('lost leadership', { reason });
    this.onLost();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const started = this.now();
    // NOTE: a leader's request ends at its deadline; a candidate's at renewDeadline after it starts.
    const abortAt = this.leading ? this.deadline : started + this.options.renewDeadlineMs;
    const attempt = new AbortController();
    this.inflight = attempt;
    const timer = setTimeout(() => attempt.abort(deadlinePassed()), Math.max(0, abortAt - started));
    const signal = attempt.signal;
    const now = this.clock.now(); // wall time, for the Lease's timestamps only
    const durationSeconds = Math.ceil(this.options.leaseDurationMs / 1000);
    let read = 0;
    try {
      // The fast path while leading, as client-go's: one write of the Lease as we last wrote it
      // (its resourceVersion fences it); only if that fails, read the Lease and decide again.
      if (this.leading && this.written) {
        try {
          const lease = { ...this.written, spec: { ...this.written.spec, renewTime: microTime(now) } };
          this.written = await this.client.replace(LEASES, lease, { signal });
          return this.renewed(started);
        } catch (err) {
          if (signal.aborted) throw err;
          this.written = undefined;
          this.log.info('optimistic lease renewal failed; reading the lease', { error: errorMessage(err) });
        }
      }
      const lease = await this.client.getOrUndefined<Lease>(LEASES, namespace, name, { signal });
      read = this.now();
      if (!lease) {
        this.written = await this.client.create<Lease>(LEASES, namespace, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
        }, { signal });
        return this.renewed(started);
      }
      const spec = lease.spec;
      const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
      // Seen now, after the request that read it: later than the holder's renewal started.
      if (this.observed?.record !== record) this.observed = { record, at: this.now() };
      const holder = spec.holderIdentity ?? '';
      const heldByUs = holder === identity;
      if (this.leading && !heldByUs) {
        this.lose(`the lease is held by ${holder || 'nobody'}`);
        return false;
      }
      const expiredMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (!heldByUs && holder !== '' && this.now() - this.observed.at < expiredMs) return false;
      lease.spec = {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(now),
        ...(heldByUs ? {} : { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      };
      this.written = await this.client.replace(LEASES, lease, { signal });
      return this.renewed(started);
    } catch (err) {
      if (!isConflict(err) && !isAlreadyExists(err)) this.log.warn('lease update failed', { error: errorMessage(err) });
      return false;
    } finally {
      clearTimeout(timer);
      if (this.inflight === attempt) this.inflight = undefined;
      // A slow attempt is the warning before a lost lease: say which request took the time.
      const took = this.now() - started;
      if (took > this.options.retryPeriodMs) {
        this.log.warn('lease request slow', { ms: Math.round(took), readMs: read ? Math.round(read - started) : undefined });
      }
    }
  }
}
