// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the leader renews
// the Lease every retry period; others take it over only after they have seen it unchanged
// for a whole lease duration (their own clock, so clock skew between nodes does not matter).
// Writes carry resourceVersion, so two candidates can never both win the same round.
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { KubeClient } from '../kube/client.ts';
import { errorMessage, isAlreadyExists, isConflict } from '../kube/errors.ts';
import { LEASES } from '../kube/resources.ts';
import type { Logger } from '../observability/logger.ts';
import { sleep, type Clock } from './clock.ts';

interface Lease extends KubeObject {
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private readonly client: KubeClient;
  private readonly options: LeaderElectionOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  private readonly stopController = new AbortController();

  constructor(client: KubeClient, options: LeaderElectionOptions, clock: Clock, log: Logger) {
    this.client = client;
    this.options = options;
    this.clock = clock;
    this.log = log.child({ lease: `${options.namespace}/${options.name}`, identity: options.identity });
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until this replica leads, then keeps renewing. Resolves once leadership is
   * acquired; `onLost` is called if it is lost later (the caller should stop acting).
   */
  async acquire(onLost: () => void): Promise<boolean> {
    const signal = this.stopController.signal;
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        this.leading = true;
        this.log.info('became leader');
        void this.renewLoop(onLost).catch((err: unknown) => this.log.error('lease renewal crashed', { error: errorMessage(err) }));
        return true;
      }
      await sleep(this.options.retryPeriodMs, signal);
    }
    return false;
  }

  /** Stops campaigning; a leader gives the Lease up so a standby takes over at once. */
  async release(): Promise<void> {
    this.stopController.abort();
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.client.get<Lease>(LEASES, this.options.namespace, this.options.name);
      if (lease.spec.holderIdentity !== this.options.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(this.clock.now()) };
      await this.client.replace(LEASES, lease);
      this.log.info('released leadership');
    } catch (err) {
      this.log.warn('could not release the lease', { error: errorMessage(err) });
    }
  }

  private async renewLoop(onLost: () => void): Promise<void> {
    const signal = this.stopController.signal;
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(this.options.retryPeriodMs, signal);
      if (signal.aborted) return;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.options.renewDeadlineMs || !this.leading) {
        this.leading = false;
        this.log.warn('lost leadership');
        onLost();
        return;
      }
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = this.clock.now();
    const durationSeconds = Math.ceil(this.options.leaseDurationMs / 1000);
    try {
      const lease = await this.client.getOrUndefined<Lease>(LEASES, namespace, name);
      if (!lease) {
        await this.client.create<Lease>(LEASES, namespace, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
        });
        return true;
      }
      const spec = lease.spec;
      const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
      if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
      const holder = spec.holderIdentity ?? '';
      const heldByUs = holder === identity;
      const expiredMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (!heldByUs && holder !== '' && Date.now() - this.observed.at < expiredMs) {
        this.leading = false;
        return false;
      }
      lease.spec = {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(now),
        ...(heldByUs ? {} : { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      };
      await this.client.replace(LEASES, lease);
      return true;
    } catch (err) {
      if (!isConflict(err) && !isAlreadyExists(err)) this.log.warn('lease update failed', { error: errorMessage(err) });
      return false;
    }
  }
}
