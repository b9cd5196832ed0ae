import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { ChannelCredentials } from "@grpc/grpc-js";
import { createChannel, createClient } from "nice-grpc";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { CoordinatorServiceDefinition } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { fromClientError } from "../../../shared/src/grpc/fromClientError.js";
import { notTheCoordinator } from "../../../shared/src/pki/coordinatorIdentity.js";
import { createKeyAndCsr } from "../../../shared/src/pki/createKeyAndCsr.js";
import { writeIdentity } from "../../../shared/src/pki/writeIdentity.js";
import { coordinatorServerCheck } from "./CoordinatorPin.js";

export interface EnrollConfig {
  coordinator: string;
  token: string;
  /** The fleet CA certificate (copied from the coordinator); the only thing trusted before enrollment. */
  caFile: string;
  identityDir: string;
  hostname?: string;
}

/**
 * Trades a one-time enrollment token for a client certificate. The private key is made here and
 * never leaves the host; the coordinator only sees the CSR. The host id is the certificate's CN.
 * The coordinator's certificate (it must carry the coordinator's markers) is pinned beside it.
 */
export async function enrollAgent(cfg: EnrollConfig, signal: AbortSignal): Promise<{ hostId: string }> {
  const caPem = await readFile(cfg.caFile, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new CairnError("not-found", `cannot read the CA certificate ${cfg.caFile}: ${e.code}`, {
      hint: "copy the coordinator's <state-dir>/pki/ca.pem to this host and pass --ca-file",
    });
  });
  const name = cfg.hostname ?? hostname();
  const { keyPem, csrPem } = await createKeyAndCsr({ commonName: name, signal });
  // The coordinator's certificate as TLS presented it (its markers checked): pinned below.
  let coordinatorPem: string | undefined;
  const channel = createChannel(
    cfg.coordinator,
    ChannelCredentials.createSsl(Buffer.from(caPem), null, null, {
      checkServerIdentity: coordinatorServerCheck(
        (cert) => notTheCoordinator(cert, undefined),
        (pem) => {
          coordinatorPem = pem;
        },
      ),
    }),
  );
  try {
    const client = createClient(CoordinatorServiceDefinition, channel);
    const r = await client
      .enroll({ token: cfg.token, csrPem, hostname: name }, { signal })
      .catch((e) => Promise.reject(fromClientError(e, cfg.coordinator)));
    if (r.caCertificatePem.trim() !== caPem.trim())
      throw new CairnError(
        "permission-denied",
        "the coordinator answered with a different CA than --ca-file",
        {
          hint: "check that --ca-file is this coordinator's <state-dir>/pki/ca.pem",
        },
      );
    if (!coordinatorPem)
      throw new CairnError("internal", "enrollment finished without seeing the coordinator's certificate");
    await writeIdentity(cfg.identityDir, {
      keyPem,
      certPem: r.certificatePem,
      caPem: r.caCertificatePem,
      coordinatorPem,
    });
    return { hostId: r.hostId };
  } finally {
    channel.close();
  }
}
