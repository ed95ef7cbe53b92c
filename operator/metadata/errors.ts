// The error every metadata-store operation throws: which operation on what, why, and whether
// retrying can help. Callers (the write-behind of runs, the model registry) retry the retryable
// ones and surface the others; healthy() follows whether the database was reached.
import pg from 'pg';

export class MetadataStoreError extends Error {
  /** e.g. "recordRun", "modelProvenance". */
  readonly operation: string;
  /**
   * True when the database was unreachable, shut down, overloaded, timed out or aborted the
   * transaction for a conflict: the same call can succeed later. False for bad records.
   */
  readonly retryable: boolean;
  /** SQLSTATE, when the database answered with an error. */
  readonly code: string | undefined;

  constructor(operation: string, subject: string, cause: unknown) {
    const code = sqlState(cause);
    const reason = cause instanceof Error ? cause.message || cause.name : String(cause);
    super(`metadata store: ${operation} ${subject} failed: ${reason}${code ? ` (SQLSTATE ${code})` : ''}`, { cause });
    this.name = 'MetadataStoreError';
    this.operation = operation;
    this.code = code;
    this.retryable = !(cause instanceof InvalidRecordError)
      && (!reachedDatabase(cause) || (code !== undefined && RETRYABLE_STATES.has(code)));
  }
}

/** A record that cannot be stored as it is (an invariant broken by the caller); never retryable. */
export class InvalidRecordError extends Error {
  override name = 'InvalidRecordError';
}

// Serialisation failure, deadlock, statement timeout / cancel, lock not available.
const RETRYABLE_STATES = new Set(['40001', '40P01', '57014', '55P03']);

// SQLSTATE classes that mean the server did not do the work: connection exception, insufficient
// resources, operator intervention (shutdown, crash recovery), system error.
const UNREACHED_CLASSES = new Set(['08', '53', '57', '58']);

/** The SQLSTATE of an error the server sent, if `err` is one (not a socket error's code). */
export function sqlState(err: unknown): string | undefined {
  return err instanceof pg.DatabaseError ? err.code : undefined;
}

/**
 * Whether a failed call still completed a round trip with a working database: a SQL error does, a
 * refused or reset connection, a timeout on our side, a shutting-down server do not.
 */
export function reachedDatabase(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return false;
  if (code === '57014') return false; // statement timeout: the database is not keeping up
  return !UNREACHED_CLASSES.has(code.slice(0, 2));
}
