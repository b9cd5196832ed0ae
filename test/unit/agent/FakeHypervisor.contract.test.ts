import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";
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
