// The outcome contract of a reconcile (controller.ts), as a table over the real WorkQueue and a
// real Metrics registry: when the key comes back, its failure count, the result label, the log.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { KubeObject } from '../api/v1alpha1/common.ts';
import { ApiError } from '../kube/errors.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { Metrics } from '../observability/metrics.ts';
import { Controller, createController, type EventSource, type ReconcileResult } from './controller.ts';
import type { InformerHandlers } from './informer.ts';

/** Lets settled promises run their callbacks (setImmediate is never mocked here). */
const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** Fake time for the queue's add-after: setTimeout and Date move only when the test ticks. */
const fakeTime = (t: TestContext) => t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });

interface LogLine { level: string; msg: string; [field: string]: unknown }

function capture(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: createLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as LogLine) }) };
}

async function reconciles(metrics: Metrics, result: string): Promise<number> {
  const { values } = await metrics.reconcileTotal.get();
  return values.find((v) => v.labels.controller === 'test' && v.labels.result === result)?.value ?? 0;
}

/** A controller whose reconcile answers with `outcomes` in turn (then `{}`), counting its calls. */
function harness(outcomes: Array<() => ReconcileResult | void>, log: Logger = capture().log) {
  const metrics = new Metrics({ defaultMetrics: false });
  const calls: string[] = [];
  const controller = new Controller({
    name: 'test',
    workers: 1,
    log,
    metrics,
    reconcile: async (key) => {
      calls.push(key);
      return (outcomes[calls.length - 1] ?? (() => ({})))();
    },
  });
  return { controller, metrics, calls };
}

const conflict = () => new ApiError('PUT', '/apis/ferry.dev/v1alpha1/namespaces/ns/pipelineruns/a/status', 409, 'Conflict', 'the object has been modified');

const NEVER = undefined;
const table: Array<{
  name: string;
  outcome: () => ReconcileResult | void;
  result: string;
  failures: number;
  /** When the key is processed again, in ms after the pass; NEVER if it is not. */
  backAfterMs: number | undefined;
  logged?: string;
}> = [
  { name: 'returns {}: done, forgotten', outcome: () => ({}), result: 'success', failures: 0, backAfterMs: NEVER },
  { name: 'returns nothing: done, forgotten', outcome: () => undefined, result: 'success', failures: 0, backAfterMs: NEVER },
  { name: 'returns {requeueAfterMs}: forgotten, back after the delay', outcome: () => ({ requeueAfterMs: 2000 }), result: 'requeue', failures: 0, backAfterMs: 2000 },
  { name: 'returns {requeue: true}: back after the key\'s backoff, not forgotten, not logged', outcome: () => ({ requeue: true }), result: 'backoff', failures: 1, backAfterMs: 5 },
  {
    name: 'returns {requeue: true, requeueAfterMs}: whichever comes first',
    outcome: () => ({ requeue: true, requeueAfterMs: 2 }), result: 'backoff', failures: 1, backAfterMs: 2,
  },
  { name: 'throws: transient, back after the backoff, logged as a warning', outcome: () => { throw new Error('boom'); }, result: 'error', failures: 1, backAfterMs: 5, logged: 'warn' },
  { name: 'throws a conflict: the same, logged at debug', outcome: () => { throw conflict(); }, result: 'error', failures: 1, backAfterMs: 5, logged: 'debug' },
];

describe('Controller outcome contract', () => {
  for (const row of table) {
    it(row.name, async (t) => {
      fakeTime(t);
      const { log, lines } = capture();
      const { controller, metrics, calls } = harness([row.outcome], log);
      controller.start();
      controller.enqueue('ns/a');
      await flush();
      assert.equal(calls.length, 1);
      assert.equal(controller.queue.failures('ns/a'), row.failures, 'failures after the pass');
      assert.equal(await reconciles(metrics, row.result), 1, `one reconcile counted as ${row.result}`);
      const failed = lines.filter((l) => l.msg === 'reconcile failed, will retry');
      assert.deepEqual(failed.map((l) => l.level), row.logged ? [row.logged] : [], 'logged only when it threw');
      if (row.logged) assert.equal(failed[0]?.controller, 'test');

      if (row.backAfterMs === NEVER) {
        t.mock.timers.tick(10 * 60_000);
        await flush();
        assert.equal(calls.length, 1, 'not processed again');
      } else {
        t.mock.timers.tick(row.backAfterMs - 1);
        await flush();
        assert.equal(calls.length, 1, `not back before ${row.backAfterMs} ms`);
        t.mock.timers.tick(1);
        await flush();
        assert.equal(calls.length, 2, `back at ${row.backAfterMs} ms`);
        assert.equal(controller.queue.failures('ns/a'), 0, 'the {} of the next pass forgets the backoff');
      }
      await controller.stop();
    });
  }

  it('backs off exponentially while {requeue: true} repeats, and forgets once a pass is done', async (t) => {
    fakeTime(t);
    const requeue = () => ({ requeue: true });
    const { controller, metrics, calls } = harness([requeue, requeue, requeue]);
    controller.start();
    controller.enqueue('ns/a');
    const backAt: number[] = [];
    for (let ms = 0; ms <= 100 && calls.length < 4; ms++) {
      await flush();
      if (calls.length > backAt.length) backAt.push(ms);
      t.mock.timers.tick(1);
    }
    // First pass at 0; then 5, 10, 20 ms of backoff: back at 5, 15, 35.
    assert.deepEqual(backAt, [0, 5, 15, 35]);
    assert.equal(await reconciles(metrics, 'backoff'), 3);
    assert.equal(await reconciles(metrics, 'success'), 1);
    assert.equal(controller.queue.failures('ns/a'), 0);
    await controller.stop();
  });

  it('{requeueAfterMs} after failures forgets them', async (t) => {
    fakeTime(t);
    const { controller, calls } = harness([() => { throw new Error('down'); }, () => ({ requeueAfterMs: 1000 })]);
    controller.start();
    controller.enqueue('ns/a');
    await flush();
    assert.equal(controller.queue.failures('ns/a'), 1);
    t.mock.timers.tick(5);
    await flush();
    assert.equal(calls.length, 2);
    assert.equal(controller.queue.failures('ns/a'), 0);
    await controller.stop();
  });

  it('never wedges a key or loses the worker when processing itself throws', async (t) => {
    fakeTime(t);
    const lines: LogLine[] = [];
    const log = createLogger({
      level: 'debug',
      write: (line) => {
        const parsed = JSON.parse(line) as LogLine;
        if (parsed.level === 'warn') throw new Error('log sink broke');
        lines.push(parsed);
      },
    });
    const { controller, calls } = harness([() => { throw new Error('boom'); }], log);
    controller.start();
    controller.enqueue('ns/a');
    await flush();
    assert.equal(calls.length, 1);
    assert.ok(lines.some((l) => l.msg === 'reconcile crashed' && l.key === 'ns/a'));
    t.mock.timers.tick(60_000);
    await flush();
    assert.equal(calls.length, 2, 'the key came back after its backoff, to the same single worker');
    controller.enqueue('ns/a');
    await flush();
    assert.equal(calls.length, 3, 'and is taken again when added');
    await controller.stop();
  });
});

describe('createController and watch', () => {
  class Source<T> implements EventSource<T> {
    handlers: InformerHandlers<T>[] = [];
    addHandlers(handlers: InformerHandlers<T>): void {
      this.handlers.push(handlers);
    }
  }
  const object = (name: string, owner?: string): KubeObject & { owner?: string } => ({
    apiVersion: 'v1', kind: 'Thing', metadata: { name, namespace: 'ns' }, ...(owner ? { owner } : {}),
  });

  async function drain(controller: Controller): Promise<string[]> {
    const keys: string[] = [];
    while (controller.queue.length > 0) {
      const key = (await controller.queue.get())!;
      keys.push(key);
      controller.queue.done(key);
    }
    return keys;
  }

  it('enqueues an object\'s own key on add, update and delete', async () => {
    const { controller } = harness([]);
    const source = new Source<KubeObject>();
    controller.watch(source);
    const [h] = source.handlers;
    h?.onAdd?.(object('a'));
    assert.deepEqual(await drain(controller), ['ns/a']);
    h?.onUpdate?.(object('b'), object('b'));
    assert.deepEqual(await drain(controller), ['ns/b']);
    h?.onDelete?.(object('c'));
    assert.deepEqual(await drain(controller), ['ns/c']);
  });

  it('enqueues every key keysOf maps to, for the old and the new object of an update', async () => {
    const { controller } = harness([]);
    const source = new Source<KubeObject & { owner?: string }>();
    controller.watch(source, (o) => (o.owner ? [`ns/${o.owner}`] : []));
    const [h] = source.handlers;
    h?.onAdd?.(object('pod-1'));
    assert.deepEqual(await drain(controller), [], 'no keys, nothing enqueued');
    h?.onUpdate?.(object('pod-1', 'run-1'), object('pod-1', 'run-2'));
    assert.deepEqual(await drain(controller), ['ns/run-1', 'ns/run-2']);
    h?.onDelete?.(object('pod-1', 'run-2'));
    assert.deepEqual(await drain(controller), ['ns/run-2']);
  });

  it('hands the reconcile its deps with the log scoped to the controller', async () => {
    const { log, lines } = capture();
    const seen: string[] = [];
    const deps = { log, metrics: new Metrics({ defaultMetrics: false }), extra: 'kept' };
    const controller = createController('scoped', deps, 1, async (d, key) => {
      seen.push(`${d.extra} ${key}`);
      d.log.info('reconciled', { key });
      return {};
    });
    controller.start();
    controller.enqueue('ns/a');
    await flush();
    await controller.stop();
    assert.deepEqual(seen, ['kept ns/a']);
    assert.equal(lines.find((l) => l.msg === 'reconciled')?.controller, 'scoped');
  });
});

describe('a costly reconcile', () => {
  /** Keeps the event loop busy for `ms` of real time, as a pass over thousands of Pods does. */
  const burn = (ms: number) => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };

  /** A controller whose first pass of `ns/big` burns 200 ms and re-adds itself and `ns/small`. */
  function costly(first: ReconcileResult) {
    const passes: string[] = [];
    const controller = new Controller({
      name: 'test', workers: 2, log: capture().log, metrics: new Metrics({ defaultMetrics: false }),
      reconcile: async (key) => {
        passes.push(key);
        if (key !== 'ns/big' || passes.filter((k) => k === key).length > 1) return {};
        controller.enqueue('ns/big'); // its Pods changed during the pass
        controller.enqueue('ns/small');
        burn(200);
        return first;
      },
    });
    return { controller, passes };
  }

  it('is followed by the next pass of its key only after the time the event loop was busy; other keys go on', async (t) => {
    fakeTime(t); // the cooldown's timer; the busy time is measured for real
    const { controller, passes } = costly({});
    controller.start();
    controller.enqueue('ns/big');
    await flush();
    assert.deepEqual(passes, ['ns/big', 'ns/small'], 'another key is not held back');
    t.mock.timers.tick(150);
    await flush();
    assert.deepEqual(passes, ['ns/big', 'ns/small'], 'the re-added key waits out the ~200 ms its pass kept the loop busy');
    t.mock.timers.tick(1000 - 150); // at most MAX_COOLDOWN_MS
    await flush();
    assert.deepEqual(passes, ['ns/big', 'ns/small', 'ns/big'], 'then it has its one more pass');
    await controller.stop();
  });

  it('that asked to come back at once (more Pods to start) is not held back', async (t) => {
    fakeTime(t);
    const { controller, passes } = costly({ requeueAfterMs: 0 });
    controller.start();
    controller.enqueue('ns/big');
    await flush();
    assert.deepEqual(passes.filter((k) => k === 'ns/big'), ['ns/big', 'ns/big'], 'the second pass came without any time passing');
    await controller.stop();
  });
});
