import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ChannelCredentials } from "@grpc/grpc-js";
import { type Command, InvalidArgumentError, Option } from "commander";
import { type Client, createChannel, createClientFactory } from "nice-grpc";
import { Metadata } from "nice-grpc-common";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { CoordinatorServiceDefinition } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { fromClientError } from "../../shared/src/grpc/fromClientError.js";

export const DEFAULT_STATE_DIR = "/var/lib/cairn-coordinator";

export interface ConnectOptions {
  coordinator?: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
}

/** Adds the options every coordinator-backed command takes. */
export function withConnectOptions(cmd: Command): Command {
  return (
    cmd
      .option("--coordinator <host:port>", "coordinator address (env CAIRN_COORDINATOR)")
      // Kept only to refuse it with a reason: a token on the command line is in `ps` for every user.
      .addOption(
        new Option("--token <token>").hideHelp().argParser(() => {
          throw new InvalidArgumentError(
            "--token is not accepted: a token on the command line shows in ps. Pass --token-file FILE or set CAIRN_TOKEN / CAIRN_TOKEN_FILE",
          );
        }),
      )
      .option("--token-file <file>", "file holding the API token (env CAIRN_TOKEN_FILE)")
      .option("--ca-file <file>", "CA certificate that signed the coordinator's (env CAIRN_CA_FILE)")
      .option("--json", "machine-readable output")
  );
}

export type CoordinatorClient = Client<typeof CoordinatorServiceDefinition>;

function readSecret(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (e) {
    throw new CairnError("not-found", `cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code}`, {
      cause: e,
    });
  }
}

/**
 * A client for the coordinator over TLS, with the token as bearer metadata. Defaults fit the
 * coordinator's own host: 127.0.0.1:7450, the CA and the bootstrap admin token in its state dir.
 * Every gRPC failure is converted back to a CairnError (exit codes).
 */
export function connectCoordinator(o: ConnectOptions): CoordinatorClient {
  const address = o.coordinator ?? process.env.CAIRN_COORDINATOR ?? "127.0.0.1:7450";
  const caFile = o.caFile ?? process.env.CAIRN_CA_FILE ?? join(DEFAULT_STATE_DIR, "pki", "ca.pem");
  if (!existsSync(caFile))
    throw new CairnError("not-found", `no CA certificate at ${caFile}`, {
      hint: "pass --ca-file (the coordinator's <state-dir>/pki/ca.pem) or set CAIRN_CA_FILE",
    });
  const tokenFile = o.tokenFile ?? process.env.CAIRN_TOKEN_FILE;
  const defaultTokenFile = join(DEFAULT_STATE_DIR, "admin.token");
  // `token` is for callers in this process (tests, the demo); the CLI flag is refused above.
  const token =
    o.token ??
    process.env.CAIRN_TOKEN ??
    (tokenFile
      ? readSecret(tokenFile, "token file")
      : existsSync(defaultTokenFile)
        ? readSecret(defaultTokenFile, "token file")
        : undefined);
  const channel = createChannel(address, ChannelCredentials.createSsl(readFileSync(caFile)));
  const metadata = Metadata(token ? { authorization: `Bearer ${token}` } : {});
  const client = createClientFactory().create(CoordinatorServiceDefinition, channel, {
    "*": { metadata },
  });
  // Wrap every method so callers see CairnErrors.
  return new Proxy(client, {
    get(target, prop, receiver) {
      const fn = Reflect.get(target, prop, receiver);
      if (typeof fn !== "function") return fn;
      return (...args: unknown[]) => {
        const r = fn.apply(target, args);
        if (r && typeof r.then === "function")
          return r.catch((e: unknown) => Promise.reject(fromClientError(e, address)));
        if (r && typeof r[Symbol.asyncIterator] === "function")
          return (async function* () {
            try {
              yield* r;
            } catch (e) {
              throw fromClientError(e, address);
            }
          })();
        return r;
      };
    },
  });
}
