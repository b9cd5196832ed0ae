import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { agentConfigSchema, loadAgentConfig } from "../../../agent/src/config/AgentConfig.js";
import {
  coordinatorConfigSchema,
  loadCoordinatorConfig,
} from "../../../coordinator/src/config/CoordinatorConfig.js";

const examples = join(import.meta.dirname, "../../../examples");

// install.sh turns these into /etc/cairn/<role>.yaml: a daemon must start from them unedited.
describe("example configs (examples/, installed as /etc/cairn/<role>.yaml.example)", () => {
  it("the coordinator's loads with the real loader; what it leaves out keeps the documented default", async () => {
    const c = await loadCoordinatorConfig(join(examples, "coordinator.yaml"));
    const defaults = coordinatorConfigSchema.parse({});
    expect(c).toEqual({ ...defaults, listen: "0.0.0.0:7450" });
  });

  it("the agent's loads with the real loader, coordinator section included", async () => {
    const a = await loadAgentConfig(join(examples, "agent.yaml"));
    const defaults = agentConfigSchema.parse({});
    expect(a).toEqual({
      ...defaults,
      listen: "0.0.0.0:7460",
      coordinator: {
        address: "coordinator.example.net:7450",
        advertiseAddress: "kvm-01.example.net:7460",
        inventoryPollSeconds: 5,
      },
    });
  });

  it("the mover's loads with the real loader: roles [mover], its own state directory", async () => {
    const m = await loadAgentConfig(join(examples, "mover.yaml"));
    const defaults = agentConfigSchema.parse({});
    expect(m).toEqual({
      ...defaults,
      roles: ["mover"],
      stateDir: "/var/lib/cairn-mover",
      listen: "0.0.0.0:7460",
      coordinator: {
        address: "coordinator.example.net:7450",
        advertiseAddress: "backup-01.example.net:7460",
        inventoryPollSeconds: 5,
      },
    });
  });
});
