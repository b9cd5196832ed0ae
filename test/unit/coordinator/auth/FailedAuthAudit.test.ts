import { describe, expect, it } from "vitest";
import { type AuthRefusal, FailedAuthAudit } from "../../../../coordinator/src/auth/FailedAuthAudit.js";

function setup(over: { maxWindows?: number } = {}) {
  let now = Date.parse("2026-12-08T02:00:00Z");
  const entries: string[] = [];
  const audit = new FailedAuthAudit({
    audit: async (principal, action, target, detail) => {
      entries.push(`${principal} ${action} ${target}: ${detail}`);
    },
    now: () => now,
    ...over,
  });
  return { audit, entries, advance: (ms: number) => (now += ms) };
}

const unknown = (port: number, over: Partial<AuthRefusal> = {}): AuthRefusal => ({
  peer: `10.0.0.5:${port}`,
  reason: "unknown token",
  method: "ListHosts",
  ...over,
});

describe("FailedAuthAudit: refused calls audited without a flood", () => {
  it("a brute force from one source writes one entry a minute, then how many more it tried", async () => {
    const { audit, entries, advance } = setup();
    for (let i = 0; i < 1000; i++) await audit.refused(unknown(40_000 + i)); // a new connection each time
    expect(entries).toEqual(["unauthenticated AuthFailed ListHosts: unknown token from 10.0.0.5"]);
    advance(60_000);
    await audit.refused(unknown(50_000));
    expect(entries).toEqual([
      "unauthenticated AuthFailed ListHosts: unknown token from 10.0.0.5",
      "unauthenticated AuthFailed ListHosts: unknown token from 10.0.0.5; 999 more refused for the same reason in the 60 s after 2026-12-08T02:00:00.000Z",
      "unauthenticated AuthFailed ListHosts: unknown token from 10.0.0.5",
    ]);
  });

  it("another source, reason or named token gets its own entry; ipv6 sources lose only their port", async () => {
    const { audit, entries } = setup();
    await audit.refused(unknown(1));
    await audit.refused(unknown(2, { peer: "[::1]:3" }));
    await audit.refused(
      unknown(4, { reason: "expired token", principal: "token:ci-bot", method: "BackupNow" }),
    );
    await audit.refused(
      unknown(5, { reason: "role denied", principal: "viewer:grafana", method: "DeletePolicy" }),
    );
    await audit.refused(
      unknown(6, { reason: "role denied", principal: "viewer:grafana", method: "CancelJob" }),
    );
    expect(entries).toEqual([
      "unauthenticated AuthFailed ListHosts: unknown token from 10.0.0.5",
      "unauthenticated AuthFailed ListHosts: unknown token from [::1]",
      "token:ci-bot AuthFailed BackupNow: expired token from 10.0.0.5",
      "viewer:grafana AuthFailed DeletePolicy: role denied from 10.0.0.5",
    ]);
  });

  it("many sources: at most maxWindows entries, the rest counted together; flush writes the counts", async () => {
    const { audit, entries } = setup({ maxWindows: 3 });
    for (let i = 0; i < 100; i++) await audit.refused(unknown(1, { peer: `10.1.${i >> 8}.${i & 255}:1` }));
    expect(entries).toHaveLength(4); // three sources and the overflow window
    expect(entries[3]).toBe(
      "unauthenticated AuthFailed ListHosts: refusals beyond the tracked sources from many sources",
    );
    await audit.flush();
    expect(entries).toHaveLength(5);
    expect(entries[4]).toMatch(/from many sources; 96 more refused for the same reason/);
  });
});
