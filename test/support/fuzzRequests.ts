import { randomInt } from "node:crypto";

/** What ts-proto generates for each message: enough to build, check and encode requests. */
export interface MessageFnsLike {
  create(base?: unknown): unknown;
  fromJSON(o: unknown): unknown;
  fromPartial(o: unknown): unknown;
  encode(m: unknown): { finish(): Uint8Array };
}

/** Hostile and boundary strings: paths, NUL, globs, huge, unicode, and names that exist in tests. */
const STRINGS: readonly string[] = [
  "",
  " ",
  "/",
  "..",
  "../../victim",
  "/etc/passwd",
  "a/b",
  "a\0b",
  "\u0000",
  "*",
  "[z-a]",
  "*a*a*a*a*a*a*a*a*a*a*b",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal shell-looking string is the input
  "${HOME}",
  "$(id)",
  "' OR 1=1 --",
  "名前",
  "🙂",
  "x".repeat(4097),
  "y".repeat(65_536),
  "main",
  "vm-1",
  "kvm-1",
  "job-20261208T000000-000000000000",
  "00000000-0000-4000-8000-000000000001",
  "20261208T000000Z-deadbeef",
  "vda",
  "raw",
  "qcow2",
  "incremental",
  "0 3 * * *",
  "name: p\nselector: {names: [vm-1]}\nschedule: {cron: '0 3 * * *'}\nrepository: main\n",
  "{}",
  "-1",
  "9".repeat(400),
];
const NUMBERS: readonly number[] = [0, 1, -1, 2, 99, 255, 65_535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 1e9];
const BIGINTS: readonly bigint[] = [0n, 1n, -1n, 2n ** 31n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n)];

function pick<T>(xs: readonly T[]): T {
  return xs[randomInt(xs.length)] as T;
}

/**
 * A random request for a message type: every scalar field gets a hostile or boundary value (or
 * keeps its default), maps and repeated fields get a few strings, nested messages are filled the
 * same way one level down (found by asking fromJSON for `{}` in their place; deeper types are not
 * reachable from here).
 */
export function randomRequest(fns: MessageFnsLike): unknown {
  return fill(fns, fns.create() as Record<string, unknown>, 1);
}

function fill(
  fns: MessageFnsLike,
  template: Record<string, unknown>,
  depth: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, dflt] of Object.entries(template)) {
    if (randomInt(4) === 0) continue; // leave some fields at their default
    if (typeof dflt === "string") out[key] = pick(STRINGS);
    else if (typeof dflt === "number") out[key] = pick(NUMBERS);
    else if (typeof dflt === "bigint") out[key] = pick(BIGINTS);
    else if (typeof dflt === "boolean") out[key] = randomInt(2) === 1;
    else if (Array.isArray(dflt)) out[key] = Array.from({ length: randomInt(4) }, () => pick(STRINGS));
    else if (dflt && typeof dflt === "object")
      out[key] = Object.fromEntries(
        Array.from({ length: randomInt(3) }, () => [pick(STRINGS), pick(STRINGS)]),
      );
    else if (dflt === undefined && depth > 0) {
      const nested = (fns.fromJSON({ [key]: {} }) as Record<string, unknown>)[key];
      if (nested && typeof nested === "object" && !Array.isArray(nested))
        out[key] = fill(fns, nested as Record<string, unknown>, 0);
    }
  }
  return out;
}

/**
 * The request as the client will send it, or undefined when it cannot be encoded (a repeated
 * field that holds messages got strings): such inputs never reach the server, so they are skipped.
 */
export function encodable(fns: MessageFnsLike, req: unknown): unknown {
  try {
    const m = fns.fromPartial(req);
    fns.encode(m).finish();
    return m;
  } catch {
    return undefined;
  }
}
