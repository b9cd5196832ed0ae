import type { CairnErrorCode } from "../errors/CairnError.js";

/** Exit codes of the `cairn` CLI: scripts can tell what kind of failure happened. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  precondition: 4,
  unavailable: 5,
  corrupt: 6,
  permission: 7,
  aborted: 130,
} as const;

export function exitCodeFor(code: CairnErrorCode): number {
  switch (code) {
    case "invalid-argument":
      return EXIT.usage;
    case "not-found":
      return EXIT.notFound;
    case "failed-precondition":
    case "already-exists":
      return EXIT.precondition;
    case "unavailable":
    case "timeout":
    case "resource-exhausted":
      return EXIT.unavailable;
    case "corrupt":
      return EXIT.corrupt;
    case "permission-denied":
    case "unauthenticated":
      return EXIT.permission;
    case "aborted":
      return EXIT.aborted;
    default:
      return EXIT.failure;
  }
}
