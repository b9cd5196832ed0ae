import { describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { planRestoreTarget } from "../../../shared/src/repository/restore/planRestoreTarget.js";

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return isCairnError(e) ? e.code : "not-cairn";
  }
  return undefined;
}

describe("planRestoreTarget", () => {
  it("creates what is missing, in either format", () => {
    expect(planRestoreTarget("/x", "missing", "raw", false)).toEqual({ kind: "new-file", format: "raw" });
    expect(planRestoreTarget("/x", "missing", "qcow2", true)).toEqual({ kind: "new-file", format: "qcow2" });
  });

  it("needs force for anything already there, and then replaces a file or writes a device", () => {
    expect(code(() => planRestoreTarget("/x", "file", "raw", false))).toBe("already-exists");
    expect(code(() => planRestoreTarget("/dev/sdz", "block-device", "raw", false))).toBe("already-exists");
    expect(planRestoreTarget("/x", "file", "qcow2", true)).toEqual({ kind: "replace-file", format: "qcow2" });
    expect(planRestoreTarget("/dev/sdz", "block-device", "raw", true)).toEqual({
      kind: "block-device",
      format: "raw",
    });
  });

  it("refuses symlinks and other files even with force, qcow2 onto a device, and unknown formats", () => {
    for (const force of [false, true]) {
      expect(code(() => planRestoreTarget("/x", "symlink", "raw", force))).toBe("invalid-argument");
      expect(code(() => planRestoreTarget("/x", "other", "raw", force))).toBe("invalid-argument");
    }
    expect(code(() => planRestoreTarget("/dev/sdz", "block-device", "qcow2", true))).toBe("invalid-argument");
    expect(code(() => planRestoreTarget("/x", "missing", "vmdk", false))).toBe("invalid-argument");
  });

  it("names the caller's flag in the hint", () => {
    let hint: string | undefined;
    try {
      planRestoreTarget("/x", "file", "raw", false, "--to");
    } catch (e) {
      if (isCairnError(e)) hint = e.hint;
    }
    expect(hint).toMatch(/another --to, or pass --force/);
  });
});
