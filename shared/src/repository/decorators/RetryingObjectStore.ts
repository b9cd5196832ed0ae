import { abortError, CairnError } from "../../errors/CairnError.js";
import {
  type CallOptions,
  type GetOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  putParts,
} from "../ports/ObjectStore.js";

export interface RetryPolicy {
  /** Total attempts including the first (default 5). */
  attempts?: number;
  /** First backoff (default 200 ms), doubled each retry with ±50 % jitter, capped by maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called before each retry (for logs). */
  onRetry?: (error: CairnError, attempt: number, what: string) => void;
}

/**
 * Retries transient failures (CairnError.transient: "unavailable", "timeout"); permanent ones
 * fail at once. After the last attempt the error says how many attempts were made.
 * Retrying is safe for every port call: put overwrites atomically, delete is idempotent.
 */
export class RetryingObjectStore implements ObjectStore {
  constructor(
    private readonly inner: ObjectStore,
    private readonly policy: RetryPolicy = {},
  ) {}

  get location(): string {
    return this.inner.location;
  }

  get writeAlignment(): number | undefined {
    return this.inner.writeAlignment;
  }

  get stagedPutsHidden(): boolean | undefined {
    return this.inner.stagedPutsHidden;
  }

  private async retry<T>(what: string, signal: AbortSignal | undefined, f: () => Promise<T>): Promise<T> {
    const attempts = this.policy.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        return await f();
      } catch (e) {
        if (!(e instanceof CairnError) || !e.transient || signal?.aborted) throw e;
        if (attempt >= attempts) {
          throw new CairnError(e.code, `${e.message} (gave up after ${attempts} attempts)`, {
            cause: e,
            hint: e.hint ?? `check that repository ${this.location} is reachable, then retry`,
            ...(e.details ? { details: e.details } : {}),
          });
        }
        this.policy.onRetry?.(e, attempt, what);
        const base = Math.min(
          this.policy.maxDelayMs ?? 5000,
          (this.policy.baseDelayMs ?? 200) * 2 ** (attempt - 1),
        );
        await sleep(base * (0.5 + Math.random()), signal, what);
      }
    }
  }

  commitStaged(options?: CallOptions): Promise<void> {
    return this.retry("commit staged objects", options?.signal, () => this.inner.commitStaged(options));
  }

  discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.retry("discard staged objects", options?.signal, () =>
      this.inner.discardStaged(owner, options),
    );
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.retry(`put ${key}`, options?.signal, () => this.inner.put(key, data, options));
  }
  putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    return this.retry(`put ${key}`, options?.signal, () => putParts(this.inner, key, parts, options));
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.retry(`get ${key}`, options?.signal, () => this.inner.get(key, options));
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.retry(`head ${key}`, options?.signal, () => this.inner.head(key, options));
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.retry(`delete ${key}`, options?.signal, () => this.inner.delete(key, options));
  }
  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    // A listing is retried as a whole (restarting a half-consumed iterator could repeat keys).
    const all = await this.retry(`list ${prefix}`, options?.signal, async () => {
      const out: ObjectInfo[] = [];
      for await (const o of this.inner.list(prefix, options)) out.push(o);
      return out;
    });
    yield* all;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, what));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!, what));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const _retryingConforms = RetryingObjectStore satisfies new (
  inner: ObjectStore,
  p?: RetryPolicy,
) => ObjectStore;
