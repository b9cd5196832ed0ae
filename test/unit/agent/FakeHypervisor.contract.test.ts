import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";
import { hypervisorBackupContract } from "../../support/hypervisorBackupContract.js";
import { hypervisorContract } from "../../support/hypervisorContract.js";

const fake = new FakeHypervisor([sampleDomain]);
hypervisorContract("FakeHypervisor", () => ({
  hypervisor: fake,
  expected: {
    uuid: sampleDomain.uuid,
    name: sampleDomain.name,
    disks: { vda: "qcow2", vdb: "raw" },
    hasGuestAgentChannel: true,
  },
}));
hypervisorBackupContract("FakeHypervisor", () => ({
  hypervisor: fake,
  domain: sampleDomain.name,
  disks: ["vda"],
  socketDir: "/nonexistent",
  scratchDir: "/nonexistent",
}));
