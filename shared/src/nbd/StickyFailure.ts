import { CairnError } from "../errors/CairnError.js";

/**
 * A stream parser's failure: once parsing failed the byte stream is out of step, so every later
 * push fails with the same error instead of misreading what follows.
 */
export class StickyFailure {
  error: CairnError | undefined;

  /** Runs one step of the parser; `what` names the parser in a wrapped non-Cairn error. */
  run(what: string, step: () => void): void {
    if (this.error) throw this.error;
    try {
      step();
    } catch (e) {
      this.error = e instanceof CairnError ? e : new CairnError("protocol", `${what} failed`, { cause: e });
      throw this.error;
    }
  }
}
