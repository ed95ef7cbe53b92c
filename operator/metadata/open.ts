// Picks the metadata store for the operator's configuration: PostgreSQL when a database URL is
// set (postgres://user@host:5432/db?sslmode=require), otherwise the no-op store. The composition
// root calls this once; nothing else should pick an implementation.
import type { Logger } from '../observability/logger.ts';
import { NoopMetadataStore } from './noop-store.ts';
import { PostgresMetadataStore, type PostgresMetadataStoreOptions } from './postgres-store.ts';
import type { MetadataStore } from './records.ts';

/**
 * Returns the store without connecting: the schema is migrated by the first operation (or an
 * explicit migrate() at start), so an unreachable database delays recording, never the operator.
 * A password may be in the URL or, kept out of it, in PGPASSWORD (which pg reads).
 */
export function openMetadataStore(
  url: string | undefined, log: Logger, options: Omit<PostgresMetadataStoreOptions, 'log'> = {},
): MetadataStore {
  const trimmed = url?.trim() ?? '';
  if (trimmed === '') {
    log.info('metadata store disabled: no database URL; runs and lineage are not recorded');
    return new NoopMetadataStore();
  }
  const target = describeDatabaseUrl(trimmed);
  log.info('opened metadata store', { database: target });
  return new PostgresMetadataStore(trimmed, { ...options, log: log.child({ store: 'metadata' }) });
}

/**
 * Checks a PostgreSQL URL and returns it without its password, for logs and errors; throws with
 * the reason (never echoing the password) for anything else.
 */
export function describeDatabaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('metadata database URL is not a URL: expected postgres://user[:password]@host[:port]/database');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new Error(`metadata database URL has scheme ${parsed.protocol}//, expected postgres:// or postgresql://`);
  }
  if (parsed.hostname === '' && !parsed.searchParams.has('host')) {
    throw new Error('metadata database URL names no host: expected postgres://user[:password]@host[:port]/database');
  }
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}
