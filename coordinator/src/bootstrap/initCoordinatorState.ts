import { mkdir, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { newSecretToken } from "../auth/newSecretToken.js";
import { type CoordinatorConfig, databasePath, pkiDir } from "../config/CoordinatorConfig.js";
import { CertificateAuthority } from "../pki/CertificateAuthority.js";
import { coordinatorIdentityPaths } from "../startCoordinator.js";
import { SqliteStore } from "../store/sqlite/SqliteStore.js";

export interface InitResult {
  caFile: string;
  tokenFile: string;
  adminToken: string;
}

/**
 * First-time setup of a coordinator's state directory: the fleet CA, the coordinator's certificate
 * (with the coordinator's markers, docs/architecture.md "Identity"; also its client certificate
 * toward agents), the database and a bootstrap
 * admin token. Refuses to run twice (the CA refuses to be replaced).
 */
export async function initCoordinatorState(
  config: CoordinatorConfig,
  opts: { dnsNames?: string[]; ipAddresses?: string[]; signal: AbortSignal },
): Promise<InitResult> {
  const paths = coordinatorIdentityPaths(config);
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(pkiDir(config), { recursive: true, mode: 0o700 });
  const authority = await CertificateAuthority.init(paths.caDir, {
    commonName: "Cairn fleet CA",
    signal: opts.signal,
  });
  const server = await authority.issueCoordinatorCertificate({
    dnsNames: ["localhost", hostname(), ...(opts.dnsNames ?? [])],
    ipAddresses: ["127.0.0.1", "::1", ...(opts.ipAddresses ?? [])],
    signal: opts.signal,
  });
  await writeFile(paths.key, server.keyPem, { mode: 0o600 });
  await writeFile(paths.cert, server.certPem, { mode: 0o644 });
  const caFile = join(pkiDir(config), "ca.pem");
  await writeFile(caFile, authority.caCertPem, { mode: 0o644 });
  const store = SqliteStore.open(databasePath(config));
  const { token, hash } = newSecretToken("adm");
  try {
    const now = Date.now();
    await store.putToken({
      hash,
      name: "bootstrap",
      kind: "admin",
      role: "admin",
      hostId: null,
      createdMs: now,
      expiresMs: null,
      usedMs: null,
    });
    await store.appendAudit({
      atMs: now,
      principal: "local",
      action: "CaInit",
      target: config.stateDir,
      detail: "",
    });
  } finally {
    await store.close();
  }
  const tokenFile = join(config.stateDir, "admin.token");
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  return { caFile, tokenFile, adminToken: token };
}
