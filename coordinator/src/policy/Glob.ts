import { CairnError } from "../../../shared/src/errors/CairnError.js";

/** One step of a compiled glob: a literal character, `?`, `*`, or a bracket class. */
type Token =
  | { t: "char"; c: string }
  | { t: "any" }
  | { t: "star" }
  | { t: "class"; negate: boolean; ranges: readonly (readonly [number, number])[] };

/** The longest glob a policy may hold: matching costs at most pattern × name steps. */
export const MAX_GLOB_LENGTH = 256;

/**
 * A shell-style glob (`*`, `?`, `[abc]`, `[a-z]`, `[!abc]`; a `]` right after `[` or `[!` is literal,
 * everything else is literal too), compiled once and matched against whole names, case-sensitively,
 * by code point. Matching is a greedy two-pointer walk that only ever returns to the latest `*`, so
 * it takes at most (pattern length × name length) steps: no regular expression, no exponential
 * backtracking whatever an operator writes (`*a*a*a*a*a*a*a*a*a*a*b` took 14 s per name as a RegExp).
 */
export class Glob {
  private constructor(
    /** The pattern as written. */
    readonly source: string,
    private readonly tokens: readonly Token[],
  ) {}

  /** Compiles `pattern`; a CairnError("invalid-argument") says what is wrong with it and where. */
  static compile(pattern: string): Glob {
    const bad = (why: string) =>
      new CairnError("invalid-argument", `${JSON.stringify(pattern)} is not a valid glob: ${why}`);
    if (pattern.length === 0) throw bad("it is empty");
    if (pattern.length > MAX_GLOB_LENGTH) throw bad(`it is longer than ${MAX_GLOB_LENGTH} characters`);
    const cs = Array.from(pattern);
    const tokens: Token[] = [];
    for (let i = 0; i < cs.length; i++) {
      const c = cs[i] as string;
      if (c === "*") {
        // Consecutive stars match what one does.
        if (tokens.at(-1)?.t !== "star") tokens.push({ t: "star" });
      } else if (c === "?") tokens.push({ t: "any" });
      else if (c === "[") {
        const open = i;
        let j = i + 1;
        const negate = cs[j] === "!";
        if (negate) j++;
        const ranges: [number, number][] = [];
        let first = true;
        for (; j < cs.length && (first || cs[j] !== "]"); j++, first = false) {
          const lo = cs[j] as string;
          if (cs[j + 1] === "-" && j + 2 < cs.length && cs[j + 2] !== "]") {
            const hi = cs[j + 2] as string;
            if ((lo.codePointAt(0) as number) > (hi.codePointAt(0) as number))
              throw bad(`the range ${lo}-${hi} is reversed (write ${hi}-${lo})`);
            ranges.push([lo.codePointAt(0) as number, hi.codePointAt(0) as number]);
            j += 2;
          } else ranges.push([lo.codePointAt(0) as number, lo.codePointAt(0) as number]);
        }
        if (j >= cs.length)
          throw bad(
            `the "[" at position ${open + 1} opens a character class that is never closed (write [[] for a literal "[")`,
          );
        tokens.push({ t: "class", negate, ranges });
        i = j;
      } else tokens.push({ t: "char", c });
    }
    return new Glob(pattern, tokens);
  }

  /** Whether the whole of `name` matches. */
  test(name: string): boolean {
    const s = Array.from(name);
    const p = this.tokens;
    let pi = 0;
    let si = 0;
    // Where the latest `*` is, and where in the name it currently stops: on a mismatch it takes one
    // more character. Earlier stars never need to move again (the leftmost match is the best one).
    let star = -1;
    let starEnd = 0;
    while (si < s.length) {
      const tok = p[pi];
      if (tok && tok.t !== "star" && matchesOne(tok, s[si] as string)) {
        pi++;
        si++;
      } else if (tok?.t === "star") {
        star = pi++;
        starEnd = si;
      } else if (star >= 0) {
        pi = star + 1;
        si = ++starEnd;
      } else return false;
    }
    while (p[pi]?.t === "star") pi++;
    return pi === p.length;
  }
}

function matchesOne(tok: Exclude<Token, { t: "star" }>, c: string): boolean {
  if (tok.t === "char") return tok.c === c;
  if (tok.t === "any") return true;
  const cp = c.codePointAt(0) as number;
  return tok.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== tok.negate;
}
