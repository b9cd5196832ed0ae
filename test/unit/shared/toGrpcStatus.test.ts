import { Status } from "nice-grpc-common";
import { describe, expect, it } from "vitest";
import { CairnError, type CairnErrorCode } from "../../../shared/src/errors/CairnError.js";
import { toGrpcStatus } from "../../../shared/src/grpc/toGrpcStatus.js";

describe("error taxonomy", () => {
  it("maps every code to a distinct, sensible gRPC status", () => {
    const cases: [CairnErrorCode, Status][] = [
      ["invalid-argument", Status.INVALID_ARGUMENT],
      ["not-found", Status.NOT_FOUND],
      ["unavailable", Status.UNAVAILABLE],
      ["timeout", Status.DEADLINE_EXCEEDED],
      ["corrupt", Status.DATA_LOSS],
      ["permission-denied", Status.PERMISSION_DENIED],
      ["unauthenticated", Status.UNAUTHENTICATED],
      ["unimplemented", Status.UNIMPLEMENTED],
    ];
    for (const [code, status] of cases) expect(toGrpcStatus(code)).toBe(status);
  });

  it("keeps the cause, marks transient codes and joins the hint for people", () => {
    const cause = new Error("ECONNRESET");
    const e = new CairnError("unavailable", "repository s3://b unreachable", {
      cause,
      hint: "check the endpoint",
    });
    expect(e.cause).toBe(cause);
    expect(e.transient).toBe(true);
    expect(new CairnError("corrupt", "x").transient).toBe(false);
    expect(e.userMessage).toBe("repository s3://b unreachable. check the endpoint");
  });
});
