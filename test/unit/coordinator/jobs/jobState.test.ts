import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chainHistory } from "../../../../coordinator/src/jobs/chainHistory.js";
import {
  assertTransition,
  isTerminal,
  JOB_STATES,
  type JobState,
} from "../../../../coordinator/src/jobs/JobState.js";
import { wasFull } from "../../../../coordinator/src/jobs/newJob.js";
import { sampleJob } from "../../../support/storeContract.js";

describe("job state machine", () => {
  it("terminal states have no way out; every other state can be cancelled", () => {
    for (const from of JOB_STATES)
      for (const to of JOB_STATES) {
        const ok = (() => {
          try {
            assertTransition("j", from, to);
            return true;
          } catch {
            return false;
          }
        })();
        if (isTerminal(from)) expect(ok, `${from} → ${to}`).toBe(false);
        if (!isTerminal(from) && to === "cancelled") expect(ok, `${from} → cancelled`).toBe(true);
      }
  });

  it("a job reaches succeeded only through running, and an illegal step names both states", () => {
    expect(() => assertTransition("j1", "queued", "succeeded")).toThrow(
      /j1: illegal transition queued → succeeded/,
    );
    // Any walk of legal steps that ends in succeeded passed through running just before.
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...JOB_STATES), { maxLength: 12 }), (steps) => {
        let s: JobState = "queued";
        let prev: JobState | undefined;
        for (const to of steps) {
          try {
            assertTransition("j", s, to);
          } catch {
            continue;
          }
          prev = s;
          s = to;
        }
        if (s === "succeeded") expect(["running", "interrupted"]).toContain(prev);
      }),
    );
  });
});

describe("chain history (what 'a full every N' counts)", () => {
  it("counts fulls and runs since the newest full per VM, for one policy", () => {
    const j = (id: string, vm: string, mode: "full" | "incremental", t: number, policy = "p", kinds = {}) =>
      sampleJob({ id, vmUuid: vm, mode, finishedMs: t, policy, state: "succeeded", diskKinds: kinds });
    const h = chainHistory(
      [
        j("1", "a", "full", 1),
        j("3", "a", "incremental", 3),
        j("2", "a", "incremental", 2),
        j("4", "b", "incremental", 4, "p", { vda: "full: no checkpoint" }),
        j("5", "b", "incremental", 5),
        j("6", "a", "full", 6, "other"),
      ],
      "p",
    );
    expect(h.get("a")).toEqual({ fullCount: 1, runsSinceFull: 2 });
    // An incremental the agent had to demote to full on every disk starts a new chain.
    expect(h.get("b")).toEqual({ fullCount: 1, runsSinceFull: 1 });
  });

  it("a job is full when its mode is, or when every disk was read in full", () => {
    expect(wasFull({ mode: "copy", diskKinds: {} })).toBe(true);
    expect(wasFull({ mode: "incremental", diskKinds: {} })).toBe(false);
    expect(wasFull({ mode: "auto", diskKinds: { vda: "full: new disk", vdb: "incremental" } })).toBe(false);
    expect(wasFull({ mode: "auto", diskKinds: { vda: "full", vdb: "full: x" } })).toBe(true);
  });
});
