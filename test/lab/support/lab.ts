import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { inject } from "vitest";
import { type LabHost, MAIN_HOST } from "./LabHost.js";
import { LabVm, type LabVmOptions } from "./LabVm.js";
import type { LabConfig } from "./labConfig.js";
import { LAB_DOMAIN_PREFIX } from "./labPaths.js";
import { type SecondHost, startSecondHost } from "./SecondHost.js";

/**
 * The lab as a test file sees it: make VMs on either host, start the second host, and dispose of
 * everything the file made with one call (in afterAll).
 */
export class Lab {
  readonly host1: LabHost = MAIN_HOST;
  private readonly vms: LabVm[] = [];
  private readonly hosts: SecondHost[] = [];
  private readonly config: LabConfig;

  /** In a vitest lab file the config comes from the global setup; benchmarks pass prepareLab()'s. */
  constructor(config?: LabConfig) {
    this.config = config ?? inject("cairnLab");
  }

  /** A unique lab domain name; the prefix lets cleanup find leftovers of crashed runs. */
  name(label: string): string {
    return `${LAB_DOMAIN_PREFIX}${label}-${randomBytes(3).toString("hex")}`;
  }

  async createVm(opts: Omit<LabVmOptions, "name"> & { label: string; host?: LabHost }): Promise<LabVm> {
    const vm = await LabVm.create(opts.host ?? this.host1, this.config.guest, this.config.runRoot, {
      ...opts,
      name: this.name(opts.label),
    });
    this.vms.push(vm);
    return vm;
  }

  async startSecondHost(): Promise<LabHost> {
    const h = await startSecondHost(join(this.config.runRoot, `host2-${process.pid}`), { timeoutMs: 90_000 });
    this.hosts.push(h);
    return h.host;
  }

  async dispose(): Promise<void> {
    const errors: unknown[] = [];
    for (const vm of this.vms.splice(0)) await vm.dispose().catch((e) => errors.push(e));
    for (const h of this.hosts.splice(0)) await h.stop().catch((e) => errors.push(e));
    if (errors.length) throw new AggregateError(errors, "lab cleanup failed");
  }
}
