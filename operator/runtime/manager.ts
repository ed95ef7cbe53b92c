// Runs the pieces of an operator in the right order: caches first (on every replica, so a
// standby is warm), then leadership, then controllers; and stops them in reverse order.
import type { Logger } from '../observability/logger.ts';
import type { Controller } from './controller.ts';
import type { LeaderElector } from './leader-election.ts';

export interface CacheLike {
  start(): void;
  stop(): Promise<void>;
  waitForSync(): Promise<void>;
  hasSynced(): boolean;
}

export class Manager {
  private readonly caches: CacheLike[];
  private readonly controllers: Controller[];
  private readonly elector: LeaderElector | undefined;
  private readonly log: Logger;
  private controllersStarted = false;
  private stopping = false;

  constructor(options: { caches: CacheLike[]; controllers: Controller[]; elector?: LeaderElector; log: Logger }) {
    this.caches = options.caches;
    this.controllers = options.controllers;
    this.elector = options.elector;
    this.log = options.log;
  }

  cachesSynced(): boolean {
    return this.caches.every((c) => c.hasSynced());
  }

  isLeader(): boolean {
    return this.elector ? this.elector.isLeader() : this.controllersStarted;
  }

  /** Starts everything; `onLostLeadership` runs if this replica stops being the leader. */
  async start(onLostLeadership: () => void): Promise<void> {
    for (const cache of this.caches) cache.start();
    await Promise.all(this.caches.map((c) => c.waitForSync()));
    this.log.info('caches synced');
    if (this.elector) {
      this.log.info('waiting for leadership');
      const won = await this.elector.acquire(() => {
        void this.stopControllers().finally(onLostLeadership);
      });
      // NOTE: a leadership already lost again (a late acquire past its deadline) starts nothing.
      if (!won || this.stopping || !this.elector.isLeader()) return;
    }
    for (const controller of this.controllers) controller.start();
    this.controllersStarted = true;
  }

  /** Drains the controllers, gives up the Lease, and stops the caches. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.stopControllers();
    await this.elector?.release();
    await Promise.all(this.caches.map((c) => c.stop()));
    this.log.info('manager stopped');
  }

  private async stopControllers(): Promise<void> {
    if (!this.controllersStarted) return;
    this.controllersStarted = false;
    await Promise.all(this.controllers.map((c) => c.stop()));
  }
}
