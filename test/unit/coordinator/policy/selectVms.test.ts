import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Glob } from "../../../../coordinator/src/policy/Glob.js";
import { selectVms } from "../../../../coordinator/src/policy/selectVms.js";

const vm = (name: string, labels: Record<string, string> = {}) => ({ uuid: `u-${name}`, name, labels });
const sel = (names: string[], globs: string[], labels: Record<string, string> = {}) => ({
  selector: { names, globs: globs.map((g) => Glob.compile(g)), labels },
});

describe("selectVms", () => {
  const vms = [
    vm("web-1", { tier: "web" }),
    vm("web-2", { tier: "web", env: "prod" }),
    vm("db-1", { tier: "db", env: "prod" }),
    vm("web.x"),
  ];

  it("names, globs and labels", () => {
    expect(selectVms(sel(["db-1"], []), vms).map((v) => v.name)).toEqual(["db-1"]);
    expect(selectVms(sel([], ["web-?"]), vms).map((v) => v.name)).toEqual(["web-1", "web-2"]);
    expect(selectVms(sel([], ["web[.-]*"]), vms).map((v) => v.name)).toEqual(["web-1", "web-2", "web.x"]);
    expect(selectVms(sel([], ["web-[!1]"]), vms).map((v) => v.name)).toEqual(["web-2"]);
    expect(selectVms(sel([], [], { env: "prod" }), vms).map((v) => v.name)).toEqual(["web-2", "db-1"]);
    expect(selectVms(sel([], ["web-*"], { env: "prod" }), vms).map((v) => v.name)).toEqual(["web-2"]);
    expect(selectVms(sel(["db-1"], ["web-1"]), vms).map((v) => v.name)).toEqual(["web-1", "db-1"]);
  });

  it("adding a label requirement never grows the selection (property)", () => {
    const arbVm = fc.record({
      uuid: fc.uuid(),
      name: fc.stringMatching(/^[a-c]{1,3}$/),
      labels: fc.dictionary(fc.constantFrom("x", "y"), fc.constantFrom("1", "2")),
    });
    fc.assert(
      fc.property(
        fc.array(arbVm, { maxLength: 20 }),
        fc.constantFrom("x", "y"),
        fc.constantFrom("1", "2"),
        (list, k, v) => {
          const wide = selectVms(sel([], ["*"]), list);
          const narrow = selectVms(sel([], ["*"], { [k]: v }), list);
          expect(narrow.every((n) => wide.includes(n))).toBe(true);
          expect(narrow.every((n) => n.labels[k] === v)).toBe(true);
        },
      ),
    );
  });
});
