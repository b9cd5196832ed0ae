import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { globToRegExp, selectVms } from "../../../../coordinator/src/policy/selectVms.js";

const vm = (name: string, labels: Record<string, string> = {}) => ({ uuid: `u-${name}`, name, labels });
const sel = (names: string[], globs: string[], labels: Record<string, string> = {}) => ({
  selector: { names, globs, labels },
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

  it("glob metacharacters of regular expressions are literal", () => {
    expect(globToRegExp("a.b").test("axb")).toBe(false);
    expect(globToRegExp("a+(b)").test("a+(b)")).toBe(true);
    expect(globToRegExp("[abc").test("[abc")).toBe(true);
  });

  it("a glob made from a literal name matches exactly that name (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !/[*?[\]]/.test(s)),
        fc.string({ maxLength: 12 }),
        (name, other) => {
          expect(globToRegExp(name).test(name)).toBe(true);
          if (other !== name) expect(globToRegExp(name).test(other)).toBe(false);
        },
      ),
    );
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
