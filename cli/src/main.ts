#!/usr/bin/env node
import { Command } from "commander";
import { CAIRN_VERSION } from "../../shared/src/version.js";
import { registerAgentCommands } from "./registerAgentCommands.js";
import { registerCaCommands } from "./registerCaCommands.js";
import { registerChainCommands } from "./registerChainCommands.js";
import { registerFleetCommands } from "./registerFleetCommands.js";
import { registerJobCommands } from "./registerJobCommands.js";
import { registerPolicyCommands } from "./registerPolicyCommands.js";
import { registerRepoCommands } from "./registerRepoCommands.js";
import { registerRepositoryAdminCommands } from "./registerRepositoryAdminCommands.js";

// grpc-js passes an IP address as TLS servername (Node's DEP0123): harmless, and noise for operators.
process.noDeprecation = true;

const program = new Command("cairn")
  .version(CAIRN_VERSION)
  .description("Cairn: incremental, application-consistent backup and restore for KVM/libvirt VMs")
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors: exit 2, like every other invalid-argument failure.
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
registerCaCommands(program);
registerFleetCommands(program);
registerChainCommands(program);
registerPolicyCommands(program);
registerJobCommands(program);
registerRepoCommands(program);
registerRepositoryAdminCommands(program);
registerAgentCommands(program);
await program.parseAsync(process.argv);
