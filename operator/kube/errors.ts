// API errors with the request that caused them, and the status codes reconcile branches on.
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string, status: number, reason: string, message: string) {
    super(`${method} ${path}: ${status} ${reason}: ${message}`);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
    this.method = method;
    this.path = path;
  }
}

/** A write refused by the client's fence before it was sent: this replica is not (or no longer) the leader. */
export class FencedError extends Error {
  readonly method: string;
  readonly path: string;

  constructor(method: string, path: string) {
    super(`${method} ${path}: not sent, this replica is not the leader (write fenced)`);
    this.name = 'FencedError';
    this.method = method;
    this.path = path;
  }
}

export const isFenced = (err: unknown): err is FencedError => err instanceof FencedError;

const hasStatus = (err: unknown, status: number): boolean => err instanceof ApiError && err.status === status;

export const isNotFound = (err: unknown) => hasStatus(err, 404);
export const isConflict = (err: unknown) => hasStatus(err, 409) && (err as ApiError).reason !== 'AlreadyExists';
export const isAlreadyExists = (err: unknown) => err instanceof ApiError && err.reason === 'AlreadyExists';
export const isGone = (err: unknown) => hasStatus(err, 410);
/** The API refused the object itself (422 Invalid, 400 BadRequest, 403 Forbidden): retrying the same request will not help. */
export const isRejected = (err: unknown) =>
  err instanceof ApiError && (err.status === 422 || err.status === 400 || err.status === 403);

/** The API refused the object's content or size (422 Invalid, 413 too large; etcd's limit shows as a 500 "request is too large"). */
export const isTooLargeOrInvalid = (err: unknown) =>
  err instanceof ApiError && (err.status === 422 || err.status === 413 || (err.status === 500 && /too large/i.test(err.message)));

export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
