import { describe, expect, it } from "vitest";
import type { GuestAgent } from "../../agent/src/guest/GuestAgent.js";
import { isCairnError } from "../../shared/src/errors/CairnError.js";

export interface GuestAgentFixture {
  agent: GuestAgent;
  /** A running guest whose agent answers. */
  live: string;
  /** A running guest with no answering agent. */
  silent: string;
}

const opts = (timeoutMs = 10_000) => ({ signal: new AbortController().signal, timeoutMs });

/** The GuestAgent port's contract: the qemu-ga adapter and the fake both pass it. */
export function guestAgentContract(name: string, fixture: () => GuestAgentFixture): void {
  describe(`GuestAgent contract: ${name}`, () => {
    it("ping answers for a live agent, false (not a throw) for a silent one, within the deadline", async () => {
      const { agent, live, silent } = fixture();
      expect(await agent.ping(live, opts())).toBe(true);
      const t = Date.now();
      expect(await agent.ping(silent, opts(2_000))).toBe(false);
      expect(Date.now() - t).toBeLessThan(2_000 + 15_000);
    });

    it("freeze, status, thaw; a second thaw is harmless", async () => {
      const { agent, live } = fixture();
      expect(await agent.freeze(live, opts())).toBeGreaterThanOrEqual(1);
      try {
        expect(await agent.status(live, opts())).toBe("frozen");
      } finally {
        expect(await agent.thaw(live, opts())).toBeGreaterThanOrEqual(1);
      }
      expect(await agent.status(live, opts())).toBe("thawed");
      expect(await agent.thaw(live, opts())).toBe(0);
    });

    it("exec returns exit code and output", async () => {
      const { agent, live } = fixture();
      expect(await agent.exec(live, ["/bin/echo", "hi", "there"], opts())).toEqual({
        exitCode: 0,
        stdout: "hi there\n",
        stderr: "",
      });
      expect((await agent.exec(live, ["/bin/false"], opts())).exitCode).toBe(1);
    });

    it("a silent agent's freeze fails with a timeout, in bounded time", async () => {
      const { agent, silent } = fixture();
      const t = Date.now();
      const err = await agent.freeze(silent, opts(2_000)).catch((e: unknown) => e);
      expect(isCairnError(err, "timeout") || isCairnError(err, "unavailable"), String(err)).toBe(true);
      expect(Date.now() - t).toBeLessThan(2_000 + 15_000);
    });

    it("an aborted signal rejects with 'aborted'", async () => {
      const { agent, live } = fixture();
      const ac = new AbortController();
      ac.abort();
      const err = await agent.status(live, { signal: ac.signal, timeoutMs: 5_000 }).catch((e: unknown) => e);
      expect(isCairnError(err, "aborted"), String(err)).toBe(true);
    });
  });
}
