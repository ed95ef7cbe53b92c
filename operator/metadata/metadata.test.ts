// Unit tests of the metadata store's pure parts: the migration list stays append-only, cache-miss
// components are compared by name, database URLs are checked without echoing passwords, and the
// no-op store numbers versions sensibly. The store itself is tested against PostgreSQL in test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../observability/logger.ts';
import { differingComponents } from './lineage.ts';
import { checksum, MIGRATIONS, validateMigrations } from './migrations.ts';
import { NoopMetadataStore } from './noop-store.ts';
import { describeDatabaseUrl, openMetadataStore } from './open.ts';
import { PostgresMetadataStore } from './postgres-store.ts';

// NOTE: a released migration never changes. If this fails, add a new migration instead; only a
// migration that was never released may be edited, and then its pin here is updated with it.
const RELEASED_CHECKSUMS: Record<number, string> = {
  1: 'b04c9741f1c21ddadacfbe542c78890158209b3d199094008baa3290fa3e7ce5',
};

describe('migrations', () => {
  it('are numbered 1, 2, 3, … and released ones are unchanged', () => {
    validateMigrations(MIGRATIONS);
    for (const [version, sum] of Object.entries(RELEASED_CHECKSUMS)) {
      const m = MIGRATIONS.find((x) => x.version === Number(version));
      assert.ok(m, `released migration ${version} was removed`);
      assert.equal(checksum(m), sum, `migration ${version} (${m.name}) was edited`);
    }
  });

  it('rejects gaps and reordering', () => {
    assert.throws(() => validateMigrations([{ version: 1, name: 'a', sql: '' }, { version: 3, name: 'b', sql: '' }]), /"b" has version 3, expected 2/);
    assert.throws(() => validateMigrations([{ version: 2, name: 'a', sql: '' }]), /expected 1/);
  });
});

describe('differingComponents', () => {
  const cases: Array<[string, Record<string, unknown>, Record<string, string>, string[]]> = [
    ['identical', { image: 'a', 'param.lr': '0.1' }, { image: 'a', 'param.lr': '0.1' }, []],
    ['one value changed', { image: 'a', 'param.lr': '0.1' }, { image: 'a', 'param.lr': '0.2' }, ['param.lr']],
    ['added and removed count, sorted', { z: '1', image: 'a' }, { image: 'b', a: '1' }, ['a', 'image', 'z']],
    ['non-string stored values compare as JSON', { n: 1 }, { n: '1' }, []],
  ];
  for (const [name, earlier, now, want] of cases) {
    it(name, () => assert.deepEqual(differingComponents(earlier, now), want));
  }
});

describe('openMetadataStore', () => {
  it('is the no-op store without a URL', async () => {
    const store = openMetadataStore(undefined, silentLogger);
    assert.ok(store instanceof NoopMetadataStore);
    assert.ok(openMetadataStore('  ', silentLogger) instanceof NoopMetadataStore);
    assert.equal(store.healthy(), true);
    assert.equal(await store.modelProvenance('ns', 'iris', 1), undefined);
    assert.deepEqual(await store.modelsTrainedFrom('ns', 'sha256:x'), []);
  });

  it('is PostgreSQL for a postgres:// URL, without connecting', async () => {
    const store = openMetadataStore('postgres://ferry:secret@db.example:5432/ferry', silentLogger);
    assert.ok(store instanceof PostgresMetadataStore);
    assert.equal(store.healthy(), false, 'no round trip yet');
    await store.close();
  });

  it('rejects other URLs with the reason and never the password', () => {
    assert.throws(() => openMetadataStore('mysql://u:hunter2@h/db', silentLogger), (err: Error) => {
      assert.match(err.message, /scheme mysql:\/\/, expected postgres:\/\//);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
    assert.throws(() => describeDatabaseUrl('db.example:5432'), /scheme db\.example:/);
    assert.throws(() => describeDatabaseUrl('not a url'), /not a URL/);
    assert.equal(describeDatabaseUrl('postgresql://ferry:hunter2@db:5432/ferry?sslmode=require'), 'postgresql://ferry:***@db:5432/ferry?sslmode=require');
  });
});

describe('NoopMetadataStore.nextModelVersion', () => {
  it('counts per model, honours atLeast and repeats a claim', async () => {
    const store = new NoopMetadataStore();
    assert.equal(await store.nextModelVersion('ns', 'iris'), 1);
    assert.equal(await store.nextModelVersion('ns', 'iris', { claim: 'run/step/out' }), 2);
    assert.equal(await store.nextModelVersion('ns', 'iris', { claim: 'run/step/out' }), 2);
    assert.equal(await store.nextModelVersion('ns', 'iris', { atLeast: 7 }), 7);
    assert.equal(await store.nextModelVersion('ns', 'churn'), 1);
  });
});
