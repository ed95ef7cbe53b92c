// Records Kubernetes Events (events.k8s.io/v1) about Ferry's objects. Events are best-effort:
// a failure is logged, never retried and never blocks a reconcile.
import { randomBytes } from 'node:crypto';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import type { Logger } from '../observability/logger.ts';
import type { Clock } from '../runtime/clock.ts';
import type { KubeClient } from './client.ts';
import { errorMessage } from './errors.ts';
import { EVENTS } from './resources.ts';

export const REPORTING_CONTROLLER = 'ferry.dev/operator';

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly instance: string;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(client: KubeClient, instance: string, clock: Clock, log: Logger) {
    this.client = client;
    this.instance = instance;
    this.clock = clock;
    this.log = log;
  }

  record(regarding: KubeObject & { apiVersion: string; kind: string }, type: 'Normal' | 'Warning', reason: string, note: string): void {
    const { name, namespace, uid } = regarding.metadata;
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${name.slice(0, 200)}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: this.clock.now().toISOString().replace('Z', '000Z'),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.instance.slice(0, 128),
      action: 'Reconcile',
      reason,
      note: note.slice(0, 1024),
      type,
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name, namespace, uid },
    };
    void this.client.create(EVENTS, namespace, event).catch((err: unknown) => {
      this.log.warn('event not recorded', { reason, namespace, name, error: errorMessage(err) });
    });
  }
}
