import { createChannel, createClient } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VirshHypervisor } from "../../agent/src/hypervisor/VirshHypervisor.js";
import { VirshSessionPool } from "../../agent/src/hypervisor/VirshSessionPool.js";
import { startAgentServer } from "../../agent/src/server/startAgentServer.js";
import { AgentServiceDefinition } from "../../shared/src/gen/cairn/v1/agent.js";
import { DomainState } from "../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { hypervisorContract } from "../support/hypervisorContract.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";

const lab = new Lab();
let vm: LabVm;
let uuid: string;
const hypervisor = new VirshHypervisor({ uri: "qemu:///system", callTimeoutMs: 30_000 });

beforeAll(async () => {
  vm = await lab.createVm({
    label: "inv",
    disks: [
      { kind: "ext4-data" },
      { kind: "blank", format: "qcow2", sizeMiB: 64 },
      { kind: "blank", format: "raw", sizeMiB: 32 },
    ],
  });
  uuid = (await run("virsh", ["-c", "qemu:///system", "domuuid", vm.name])).stdout.trim();
});
afterAll(() => lab.dispose());

const pool = new VirshSessionPool("qemu:///system");
afterAll(() => pool.close());
hypervisorContract("VirshHypervisor through a pool of virsh sessions", () => ({
  hypervisor: new VirshHypervisor({ uri: "qemu:///system", callTimeoutMs: 30_000, runner: pool.run }),
  expected: {
    uuid,
    name: vm.name,
    disks: { vda: "qcow2", vdb: "qcow2", vdc: "raw" },
    hasGuestAgentChannel: true,
  },
}));

hypervisorContract("VirshHypervisor on the lab's libvirt", () => ({
  hypervisor,
  expected: {
    uuid,
    name: vm.name,
    disks: { vda: "qcow2", vdb: "qcow2", vdc: "raw" },
    hasGuestAgentChannel: true,
  },
}));

describe("agent gRPC server on real libvirt", () => {
  it("lists a lab VM with its disks as it goes from shut off to running", async () => {
    const log = createLogger("test", "silent");
    const s = await startAgentServer(
      { listen: "127.0.0.1:0" },
      { hypervisor, hostId: "lab", libvirtUri: "qemu:///system" },
      log,
    );
    try {
      const c = createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${s.port}`));
      const find = async () => (await c.listDomains({})).domains.find((d) => d.uuid === uuid);
      expect((await find())?.state).toBe(DomainState.DOMAIN_STATE_SHUTOFF);
      await vm.start();
      expect((await find())?.state).toBe(DomainState.DOMAIN_STATE_RUNNING);
      expect((await find())?.disks.map((d) => d.source)).toEqual(vm.disks.map((d) => d.path));
      const { inventory } = await c.getHostInventory({});
      expect(inventory?.libvirtVersion).toMatch(/^9\./);
      expect(inventory?.qemuVersion).toMatch(/^7\./);
    } finally {
      await s.close();
    }
  });
});
