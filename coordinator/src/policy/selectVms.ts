import type { Policy } from "./Policy.js";
import type { VmRef } from "./VmRef.js";

const cache = new Map<string, RegExp>();

/** Shell-style glob (`*`, `?`, `[abc]`, `[!abc]`) → anchored, case-sensitive RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = cache.get(glob);
  if (re) return re;
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === "*") out += ".*";
    else if (c === "?") out += ".";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) out += "\\[";
      else {
        let body = glob.slice(i + 1, end);
        const negate = body.startsWith("!");
        if (negate) body = body.slice(1);
        out += `[${negate ? "^" : ""}${body.replace(/[\\\]^]/g, "\\$&")}]`;
        i = end;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  re = new RegExp(`^${out}$`, "s");
  cache.set(glob, re);
  return re;
}

/**
 * The VMs a policy selects: the name is listed or matches a glob (or neither is given), and every
 * selector label equals the VM's label.
 */
export function selectVms<T extends VmRef>(policy: Pick<Policy, "selector">, vms: readonly T[]): T[] {
  const { names, globs, labels } = policy.selector;
  const nameSet = new Set(names);
  const res = globs.map(globToRegExp);
  const byName = names.length + globs.length > 0;
  const wanted = Object.entries(labels);
  return vms.filter(
    (vm) =>
      (!byName || nameSet.has(vm.name) || res.some((r) => r.test(vm.name))) &&
      wanted.every(([k, v]) => vm.labels[k] === v),
  );
}
