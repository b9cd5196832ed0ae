/**
 * Cairn's small error taxonomy. Core code throws CairnError with one of these codes and a
 * `cause`; only the gRPC server edge maps codes to gRPC status (see toGrpcStatus.ts).
 * Messages say what went wrong; `hint` says what the operator should do about it.
 */
export type CairnErrorCode =
  | "invalid-argument" // the caller sent something wrong; retrying the same input will not help
  | "not-found"
  | "already-exists"
  | "failed-precondition" // the system is not in a state that allows this (VM running, lock held...)
  | "unavailable" // transient: a peer or service is down or the connection dropped; retry may help
  | "timeout" // an explicit deadline passed
  | "aborted" // the caller's AbortSignal fired
  | "corrupt" // data failed an integrity check
  | "protocol" // a peer violated a wire protocol
  | "resource-exhausted" // disk full, quota, too large
  | "permission-denied"
  | "unauthenticated"
  | "unimplemented"
  | "internal";

export interface CairnErrorOptions {
  cause?: unknown;
  /** What the operator should do about it, in one sentence. */
  hint?: string;
  /** Structured context for logs (no secrets). */
  details?: Record<string, unknown>;
}

export class CairnError extends Error {
  readonly code: CairnErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: CairnErrorCode, message: string, options: CairnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CairnError";
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** True for errors where the same call may succeed later (retry decorators use this). */
  get transient(): boolean {
    return this.code === "unavailable" || this.code === "timeout";
  }

  /** Message plus hint, for people. */
  get userMessage(): string {
    return this.hint ? `${this.message}. ${this.hint}` : this.message;
  }
}

export function isCairnError(e: unknown, code?: CairnErrorCode): e is CairnError {
  return e instanceof CairnError && (code === undefined || e.code === code);
}

/** Converts an AbortSignal's reason into a CairnError("aborted") unless it already is one. */
export function abortError(signal: AbortSignal, what: string): CairnError {
  const r: unknown = signal.reason;
  if (r instanceof CairnError) return r;
  return new CairnError("aborted", `${what} was aborted`, { cause: r });
}
