import type { Policy } from "./Policy.js";
import type { VmRef } from "./VmRef.js";

/**
 * The VMs a policy selects: the name is listed or matches a glob (or neither is given), and every
 * selector label equals the VM's label. Globs were compiled with the policy (Glob.ts).
 */
export function selectVms<T extends VmRef>(policy: Pick<Policy, "selector">, vms: readonly T[]): T[] {
  const { names, globs, labels } = policy.selector;
  const nameSet = new Set(names);
  const byName = names.length + globs.length > 0;
  const wanted = Object.entries(labels);
  return vms.filter(
    (vm) =>
      (!byName || nameSet.has(vm.name) || globs.some((g) => g.test(vm.name))) &&
      wanted.every(([k, v]) => vm.labels[k] === v),
  );
}
