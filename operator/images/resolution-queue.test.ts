// The scheduling of background image resolution (pure logic: the resolver is a stand-in whose
// answers the test releases by hand): quick answers come at once, slow ones wake the run later,
// and namespaces take turns for the slots.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ImageResolutionQueue } from './resolution-queue.ts';
import type { ImageResolver, ResolvedImage } from './resolver.ts';

/** Resolves each reference when the test says so; `started` lists them in the order asked. */
function heldResolver() {
  const started: string[] = [];
  const release = new Map<string, () => void>();
  const resolver: ImageResolver = {
    resolve: (reference) => new Promise<ResolvedImage>((resolve) => {
      started.push(reference);
      const done = () => resolve({ reference, pinned: `${reference}@sha256:${'a'.repeat(64)}`, digest: `sha256:${'a'.repeat(64)}` } as ResolvedImage);
      if (reference.startsWith('quick/')) done();
      else release.set(reference, done);
    }),
  };
  return { resolver, started, release: (reference: string) => release.get(reference)?.() };
}

const options = (onResolved: (key: string) => void) => ({
  concurrency: 2, perRunConcurrency: 4, deadlineMs: 60_000, answerWithinMs: 20, keepMs: 60_000, onResolved,
});
const request = (namespace: string, run: string, image: string) => ({ key: `${namespace}/${run}`, namespace, references: [['step', image] as const] });
const tick = () => new Promise((resolve) => setTimeout(resolve, 30));

describe('ImageResolutionQueue', () => {
  it('answers a quick resolution at once, and forgets it once taken', async () => {
    const { resolver } = heldResolver();
    const queue = new ImageResolutionQueue(resolver, options(() => undefined));
    const answer = await queue.request(request('a', 'r1', 'quick/x:1'));
    assert.ok('done' in answer);
    assert.match(answer.done.get('step')?.image?.pinned ?? '', /^quick\/x:1@sha256:/);
    assert.deepEqual(queue.depth, { waiting: 0, running: 0 });
  });

  it('leaves a slow one to the background, wakes its run when done, then answers it', async () => {
    const { resolver, release } = heldResolver();
    const woken: string[] = [];
    const queue = new ImageResolutionQueue(resolver, options((key) => woken.push(key)));
    assert.deepEqual(await queue.request(request('a', 'r1', 'slow/x:1')), { pending: true });
    assert.deepEqual(await queue.request(request('a', 'r1', 'slow/x:1')), { pending: true }, 'asked again, not started again');
    release('slow/x:1');
    await tick();
    assert.deepEqual(woken, ['a/r1']);
    assert.ok('done' in (await queue.request(request('a', 'r1', 'slow/x:1'))));
  });

  it('gives namespaces the free slots in turn: one tenant with many slow runs does not hold up another', async () => {
    const { resolver, started, release } = heldResolver();
    const queue = new ImageResolutionQueue(resolver, options(() => undefined));
    for (let i = 1; i <= 4; i++) void queue.request(request('noisy', `r${i}`, `slow/noisy-${i}:1`));
    void queue.request(request('quiet', 'q1', 'slow/quiet-1:1'));
    await tick();
    // Two slots: noisy r1 started first, then the turn went to quiet before noisy r2.
    assert.deepEqual(started, ['slow/noisy-1:1', 'slow/noisy-2:1']);
    release('slow/noisy-1:1');
    await tick();
    assert.deepEqual(started.slice(2), ['slow/quiet-1:1'], 'the freed slot went to the other namespace');
    assert.deepEqual(queue.depth, { waiting: 2, running: 2 });
  });

  it('asks anew when the run asks for other images (its Pipeline changed before it froze)', async () => {
    const { resolver } = heldResolver();
    const queue = new ImageResolutionQueue(resolver, options(() => undefined));
    await queue.request(request('a', 'r1', 'quick/x:1'));
    const other = await queue.request(request('a', 'r1', 'quick/y:2'));
    assert.ok('done' in other);
    assert.match(other.done.get('step')?.image?.pinned ?? '', /^quick\/y:2@/);
  });
});
