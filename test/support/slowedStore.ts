import type { ObjectStore } from "../../shared/src/repository/ports/ObjectStore.js";

/**
 * The store with every read (get*) delayed by `delayMs()` milliseconds, asked at each read: a
 * restore then runs long enough for a test to abort it mid-way.
 */
export function slowedStore(store: ObjectStore, delayMs: () => number): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      const fn = (v as (...a: unknown[]) => unknown).bind(target);
      if (!String(prop).startsWith("get")) return fn;
      return async (...args: unknown[]) => {
        const ms = delayMs();
        if (ms) await new Promise((r) => setTimeout(r, ms));
        return fn(...args);
      };
    },
  });
}
