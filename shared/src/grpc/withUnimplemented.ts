import { ServerError, Status } from "nice-grpc-common";

interface ServiceDefinitionLike {
  readonly fullName: string;
  readonly methods: Record<string, { readonly name: string; readonly responseStream: boolean }>;
}

/**
 * Completes a partial service implementation: every RPC that is declared in the proto but not
 * built yet answers UNIMPLEMENTED with a message naming the RPC, instead of a generic error.
 */
export function withUnimplemented<Impl extends object>(
  definition: ServiceDefinitionLike,
  partial: Partial<Impl>,
  version: string,
): Impl {
  const full: Record<string, unknown> = { ...partial };
  for (const [key, method] of Object.entries(definition.methods)) {
    if (key in full) continue;
    const message = `${definition.fullName}/${method.name} is not implemented in Cairn ${version} yet; upgrade the ${
      definition.fullName.endsWith("AgentService") ? "agent" : "coordinator"
    } to a release that has it`;
    full[key] = method.responseStream
      ? // biome-ignore lint/correctness/useYield: throws before yielding, by design
        async function* () {
          throw new ServerError(Status.UNIMPLEMENTED, message);
        }
      : async () => {
          throw new ServerError(Status.UNIMPLEMENTED, message);
        };
  }
  return full as Impl;
}
