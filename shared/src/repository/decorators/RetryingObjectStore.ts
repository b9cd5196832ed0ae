import { CairnError } from "../../errors/CairnError.js";
import type { CallOptions, GetOptions, ObjectInfo, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { abortableSleep } from "./abortableSleep.js";
import { ObjectStoreDecorator } from "./ObjectStoreDecorator.js";

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
export class RetryingObjectStore extends ObjectStoreDecorator {
  constructor(
    inner: ObjectStore,
    private readonly policy: RetryPolicy = {},
  ) {
    super(inner);
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
        await abortableSleep(base * (0.5 + Math.random()), signal, what);
      }
    }
  }

  override commitStaged(options?: CallOptions): Promise<void> {
    return this.retry("commit staged objects", options?.signal, () => super.commitStaged(options));
  }

  override discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.retry("discard staged objects", options?.signal, () => super.discardStaged(owner, options));
  }

  override put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.retry(`put ${key}`, options?.signal, () => super.put(key, data, options));
  }
  override putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    return this.retry(`put ${key}`, options?.signal, () => super.putParts(key, parts, options));
  }
  override get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.retry(`get ${key}`, options?.signal, () => super.get(key, options));
  }
  override head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.retry(`head ${key}`, options?.signal, () => super.head(key, options));
  }
  override delete(key: string, options?: CallOptions): Promise<void> {
    return this.retry(`delete ${key}`, options?.signal, () => super.delete(key, options));
  }
  override async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    // A listing is retried as a whole (restarting a half-consumed iterator could repeat keys).
    const all = await this.retry(`list ${prefix}`, options?.signal, async () => {
      const out: ObjectInfo[] = [];
      for await (const o of this.inner.list(prefix, options)) out.push(o);
      return out;
    });
    yield* all;
  }
}

export const _retryingConforms = RetryingObjectStore satisfies new (
  inner: ObjectStore,
  p?: RetryPolicy,
) => ObjectStore;
