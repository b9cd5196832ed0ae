import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, SECRET_FIELDS } from "../../../shared/src/log/createLogger.js";

function capture() {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, dest };
}

describe("logs never carry secrets (#24)", () => {
  it("redacts every secret field at the top level and nested two deep, and keeps the rest", () => {
    const { lines, dest } = capture();
    const log = createLogger("t", "info", dest);
    for (const f of SECRET_FIELDS) {
      log.info(
        { [f]: "s3cr3t-top", req: { [f]: "s3cr3t-1" }, config: { s3: { [f]: "s3cr3t-2" } }, key: "packs/ab" },
        f,
      );
    }
    expect(lines).toHaveLength(SECRET_FIELDS.length);
    for (const l of lines) {
      expect(l).not.toContain("s3cr3t");
      expect(l).toContain("[redacted]");
      expect(JSON.parse(l).key).toBe("packs/ab");
    }
  });
});
