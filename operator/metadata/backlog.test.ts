import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MetadataBacklog } from './backlog.ts';
import { NoopMetadataStore } from './noop-store.ts';

/** A store whose reachability the test sets, and which says so to its listeners as the real one does. */
function storeThat() {
  const listeners: Array<() => void> = [];
  let up = true;
  const store = Object.assign(new NoopMetadataStore(), {
    healthy: () => up,
    onReachable: (listener: () => void) => { listeners.push(listener); },
  });
  return { store, set(next: boolean) { const was = up; up = next; if (next && !was) for (const l of listeners) l(); } };
}

describe('MetadataBacklog', () => {
  it('writes while the store answers; a failure while it still answers is retried, not deferred', async () => {
    const { store } = storeThat();
    const backlog = new MetadataBacklog();
    assert.deepEqual(await backlog.write(store, 'ns/a', async () => {}), { kind: 'stored' });
    const outcome = await backlog.write(store, 'ns/b', async () => { throw new Error('deadlock'); });
    assert.equal(outcome.kind, 'retry');
    const replayed: string[] = [];
    backlog.replayWhenReachable(store, (key) => replayed.push(key));
    assert.deepEqual(replayed, []);
  });

  it('tries nothing while the store is down, and hands every deferred key back once when it answers', async () => {
    const { store, set } = storeThat();
    const backlog = new MetadataBacklog();
    const replayed: string[] = [];
    backlog.replayWhenReachable(store, (key) => replayed.push(key));
    set(false);
    let tried = 0;
    assert.deepEqual(await backlog.write(store, 'ns/a', async () => { tried++; }), { kind: 'deferred' });
    await backlog.write(store, 'ns/a', async () => { tried++; });
    await backlog.write(store, 'ns/b', async () => { tried++; });
    assert.equal(tried, 0);
    set(true);
    assert.deepEqual(replayed, ['ns/a', 'ns/b']);
    set(false);
    set(true);
    assert.deepEqual(replayed, ['ns/a', 'ns/b'], 'handed back once');
  });

  it('defers a key whose write finds the store gone', async () => {
    const { store, set } = storeThat();
    const backlog = new MetadataBacklog();
    const replayed: string[] = [];
    backlog.replayWhenReachable(store, (key) => replayed.push(key));
    const outcome = await backlog.write(store, 'ns/a', async () => { set(false); throw new Error('connection refused'); });
    assert.equal(outcome.kind, 'deferred');
    set(true);
    assert.deepEqual(replayed, ['ns/a']);
  });
});
