import { ChannelCredentials } from "@grpc/grpc-js";
import { type Channel, type Client, createChannel, createClient } from "nice-grpc";
import {
  type AgentServiceDefinition,
  AgentServiceDefinition as Def,
} from "../../../shared/src/gen/cairn/v1/agent.js";

export type AgentClient = Client<typeof AgentServiceDefinition>;

export interface CoordinatorIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/**
 * One mutual-TLS channel per agent address, reused across jobs. The coordinator presents its own
 * certificate (issued by the fleet CA) and trusts only agents whose certificate the CA issued.
 */
export class AgentClients {
  private readonly channels = new Map<string, { channel: Channel; client: AgentClient }>();
  /** One TLS context for every channel: an OpenSSL context (with its CA store) per agent added up. */
  private readonly creds: ChannelCredentials;

  constructor(identity: CoordinatorIdentity | undefined) {
    this.creds = identity
      ? ChannelCredentials.createSsl(
          Buffer.from(identity.caPem),
          Buffer.from(identity.keyPem),
          Buffer.from(identity.certPem),
        )
      : ChannelCredentials.createInsecure();
  }

  /**
   * The client for one host. Its certificate is checked against the host id (enrollment puts it in
   * the certificate's names), not against the address dialled: an agent reached on any address
   * (a mover behind another interface) verifies, and a certificate of another host never does.
   */
  get(host: { id: string; agentAddress: string }): AgentClient {
    const key = `${host.id}@${host.agentAddress}`;
    let c = this.channels.get(key);
    if (!c) {
      const channel = createChannel(host.agentAddress, this.creds, {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 5_000,
        "grpc.ssl_target_name_override": host.id,
        "grpc.default_authority": host.id,
      });
      c = { channel, client: createClient(Def, channel) };
      this.channels.set(key, c);
    }
    return c.client;
  }

  /** Drops a host's channel (the agent moved or restarted with a new address). */
  forget(host: { id: string; agentAddress: string }): void {
    const key = `${host.id}@${host.agentAddress}`;
    this.channels.get(key)?.channel.close();
    this.channels.delete(key);
  }

  close(): void {
    for (const c of this.channels.values()) c.channel.close();
    this.channels.clear();
  }
}
