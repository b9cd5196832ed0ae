import { describe, expect, it } from "vitest";
import { checkJobId, jobDirOf } from "../../../agent/src/jobs/checkJobId.js";

describe("job ids that reach paths (#24 hole 1)", () => {
  it("accepts the coordinator's and the CLI's ids and places them under workDir/jobs", () => {
    expect(jobDirOf("/var/lib/cairn", "job-20261208T005300-0b811d7bc9a1")).toBe(
      "/var/lib/cairn/jobs/job-20261208T005300-0b811d7bc9a1",
    );
    expect(checkJobId("local-k2j3h4")).toBe("local-k2j3h4");
  });

  it.each(["", " ", "../../victim", "..", "a/b", "/etc", ".x", "-x", "a..b", "a\0b", "x".repeat(129)])(
    "refuses %j before any path is built",
    (id) => {
      expect(() => jobDirOf("/var/lib/cairn", id)).toThrow(/job_id/);
    },
  );
});
