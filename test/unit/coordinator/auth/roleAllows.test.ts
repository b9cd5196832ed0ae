import { describe, expect, it } from "vitest";
import { knownAdminMethods, roleAllows } from "../../../../coordinator/src/auth/roleAllows.js";
import { AGENT_METHODS, PUBLIC_METHODS } from "../../../../coordinator/src/startCoordinator.js";
import { CoordinatorServiceDefinition } from "../../../../shared/src/gen/cairn/v1/coordinator.js";

describe("roles", () => {
  const methods = Object.values(CoordinatorServiceDefinition.methods).map((m) => m.name);

  it("every CoordinatorService method is either an agent/public call or has a least role", () => {
    const unplaced = methods.filter(
      (m) => !AGENT_METHODS.has(m) && !PUBLIC_METHODS.has(m) && !knownAdminMethods().includes(m),
    );
    expect(unplaced).toEqual([]);
  });

  it("a viewer only reads; an operator also backs up; an admin does everything; unknown methods are denied", () => {
    const allowed = (role: "viewer" | "operator" | "admin") =>
      knownAdminMethods().filter((m) => roleAllows(role, m));
    expect(allowed("viewer").every((m) => /^(List|Watch|Show|RepositoryStats)/.test(m))).toBe(true);
    expect(
      allowed("operator")
        .filter((m) => !allowed("viewer").includes(m))
        .sort(),
    ).toEqual(
      [
        "ApplyPolicy",
        "BackupNow",
        "CancelJob",
        "DrainHost",
        "RestoreDisk",
        "RestoreVm",
        "UndrainHost",
        "VerifyRepository",
      ].sort(),
    );
    expect(allowed("admin")).toEqual(knownAdminMethods());
    for (const role of ["viewer", "operator", "admin"] as const) {
      expect(roleAllows(role, "DropEverything")).toBe(false);
      expect(roleAllows(role, "Heartbeat")).toBe(false);
    }
    for (const m of [
      "DeletePolicy",
      "PruneRepository",
      "GcRepository",
      "CreateToken",
      "CreateEnrollmentToken",
    ])
      expect([roleAllows("viewer", m), roleAllows("operator", m), roleAllows("admin", m)]).toEqual([
        false,
        false,
        true,
      ]);
  });
});
