/** Calls `fn` until it succeeds once; later calls share that success (a failure is retried). */
export function once<A extends unknown[], T>(fn: (...a: A) => Promise<T>): (...a: A) => Promise<T> {
  let done: Promise<T> | undefined;
  return (...a) => {
    done ??= fn(...a);
    done.catch(() => {
      done = undefined;
    });
    return done;
  };
}
