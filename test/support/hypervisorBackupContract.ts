import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkpointXml, pullBackupXml } from "../../agent/src/hypervisor/backupXml.js";
import type { Hypervisor } from "../../agent/src/hypervisor/Hypervisor.js";
import { isCairnError } from "../../shared/src/errors/CairnError.js";

export interface HypervisorBackupFixture {
  hypervisor: Hypervisor;
  /** A running domain whose `disks` are qcow2 (bitmap-capable). */
  domain: string;
  disks: string[];
  /** A directory QEMU can create the NBD socket in, and one for scratch images. */
  socketDir: string;
  scratchDir: string;
}

const sig = () => new AbortController().signal;

/** Checkpoint and pull-backup half of the Hypervisor contract (needs a running domain). */
export function hypervisorBackupContract(name: string, fixture: () => HypervisorBackupFixture): void {
  describe(`Hypervisor backup contract: ${name}`, () => {
    const backup = (f: HypervisorBackupFixture, sock: string, incremental?: string) =>
      pullBackupXml({
        socketPath: join(f.socketDir, sock),
        disks: f.disks.map((t) => ({
          target: t,
          backup: true,
          scratchPath: join(f.scratchDir, `${sock}-${t}.qcow2`),
        })),
        ...(incremental ? { incremental } : {}),
      });
    const cp = (f: HypervisorBackupFixture, n: string) =>
      checkpointXml({ name: n, disks: f.disks.map((t) => ({ target: t, bitmap: true })) });

    it("a full pull backup creates its checkpoint atomically; one job at a time; end is idempotent", async () => {
      const f = fixture();
      const h = f.hypervisor;
      expect(await h.backupJob(f.domain, sig())).toBeUndefined();
      await h.beginPullBackup(
        f.domain,
        { backupXml: backup(f, "full.sock"), checkpointXml: cp(f, "ct-1") },
        sig(),
      );
      try {
        const job = await h.backupJob(f.domain, sig());
        expect(job?.disks.map((d) => d.target)).toEqual(f.disks);
        expect(job?.disks.every((d) => d.exportName && d.exportBitmap === undefined)).toBe(true);
        const again = await h
          .beginPullBackup(f.domain, { backupXml: backup(f, "again.sock") }, sig())
          .catch((e: unknown) => e);
        expect(isCairnError(again, "failed-precondition"), String(again)).toBe(true);
      } finally {
        await h.endBackup(f.domain, sig());
      }
      expect(await h.backupJob(f.domain, sig())).toBeUndefined();
      await h.endBackup(f.domain, sig());
      const cps = await h.listCheckpoints(f.domain, sig());
      expect(cps.map((c) => c.name)).toEqual(["ct-1"]);
      expect(Object.keys(cps[0]!.bitmaps).sort()).toEqual([...f.disks].sort());
    });

    it("an incremental exports the dirty bitmap and chains the new checkpoint to the last", async () => {
      const f = fixture();
      const h = f.hypervisor;
      await h.beginPullBackup(
        f.domain,
        { backupXml: backup(f, "inc.sock", "ct-1"), checkpointXml: cp(f, "ct-2") },
        sig(),
      );
      try {
        const job = await h.backupJob(f.domain, sig());
        expect(job?.disks.every((d) => d.incremental === "ct-1" && d.exportBitmap)).toBe(true);
      } finally {
        await h.endBackup(f.domain, sig());
      }
      const cps = await h.listCheckpoints(f.domain, sig());
      expect(cps.map((c) => [c.name, c.parent])).toEqual([
        ["ct-1", undefined],
        ["ct-2", "ct-1"],
      ]);
    });

    it("an incremental from an unknown checkpoint is refused and creates nothing", async () => {
      const f = fixture();
      const err = await f.hypervisor
        .beginPullBackup(
          f.domain,
          { backupXml: backup(f, "bad.sock", "no-such-cp"), checkpointXml: cp(f, "ct-x") },
          sig(),
        )
        .catch((e: unknown) => e);
      expect(isCairnError(err, "not-found") || isCairnError(err, "failed-precondition"), String(err)).toBe(
        true,
      );
      expect((await f.hypervisor.listCheckpoints(f.domain, sig())).map((c) => c.name)).toEqual([
        "ct-1",
        "ct-2",
      ]);
      expect(await f.hypervisor.backupJob(f.domain, sig())).toBeUndefined();
    });

    it("checkpoint metadata can be dropped and redefined from its XML (what migration needs)", async () => {
      const f = fixture();
      const h = f.hypervisor;
      const [, ct2] = await h.listCheckpoints(f.domain, sig());
      await h.deleteCheckpoint(f.domain, "ct-2", { metadataOnly: true }, sig());
      expect((await h.listCheckpoints(f.domain, sig())).map((c) => c.name)).toEqual(["ct-1"]);
      await h.redefineCheckpoint(f.domain, ct2!.xml, { validate: true }, sig());
      expect((await h.listCheckpoints(f.domain, sig())).map((c) => [c.name, c.parent])).toEqual([
        ["ct-1", undefined],
        ["ct-2", "ct-1"],
      ]);
    });

    it("deleting the oldest checkpoint keeps the chain usable", async () => {
      const f = fixture();
      const h = f.hypervisor;
      await h.deleteCheckpoint(f.domain, "ct-1", { metadataOnly: false }, sig());
      expect((await h.listCheckpoints(f.domain, sig())).map((c) => c.name)).toEqual(["ct-2"]);
      const err = await h
        .deleteCheckpoint(f.domain, "ct-1", { metadataOnly: false }, sig())
        .catch((e: unknown) => e);
      expect(isCairnError(err, "not-found"), String(err)).toBe(true);
    });

    it("a checkpoint made on its own chains to the last; an incremental without one creates none", async () => {
      const f = fixture();
      const h = f.hypervisor;
      await h.createCheckpoint(f.domain, cp(f, "ct-3"), sig());
      const dup = await h.createCheckpoint(f.domain, cp(f, "ct-3"), sig()).catch((e: unknown) => e);
      expect(isCairnError(dup, "failed-precondition"), String(dup)).toBe(true);
      // The quiesced path: checkpoint first, then the export incremental from the one before it.
      await h.beginPullBackup(f.domain, { backupXml: backup(f, "sep.sock", "ct-2") }, sig());
      try {
        const job = await h.backupJob(f.domain, sig());
        expect(job?.disks.every((d) => d.incremental === "ct-2" && d.exportBitmap)).toBe(true);
      } finally {
        await h.endBackup(f.domain, sig());
      }
      const cps = await h.listCheckpoints(f.domain, sig());
      expect(cps.map((c) => [c.name, c.parent])).toEqual([
        ["ct-2", undefined],
        ["ct-3", "ct-2"],
      ]);
      expect(Object.keys(cps[1]!.bitmaps).sort()).toEqual([...f.disks].sort());
    });

    it("one checkpoint by name, with the XML libvirt gives; an unknown name is undefined", async () => {
      const f = fixture();
      const c = await f.hypervisor.checkpoint(f.domain, "ct-3", sig());
      expect(c?.name).toBe("ct-3");
      expect(c?.parent).toBe("ct-2");
      expect(c?.xml).toContain("<domaincheckpoint>");
      expect(Object.keys(c?.bitmaps ?? {}).sort()).toEqual([...f.disks].sort());
      expect(await f.hypervisor.checkpoint(f.domain, "ct-none", sig())).toBeUndefined();
    });

    it("the running QEMU has each checkpoint's bitmap, consistent and recording", async () => {
      const f = fixture();
      const live = await f.hypervisor.liveBitmaps(f.domain, sig());
      for (const t of f.disks) {
        const names = (live.get(t) ?? []).map((b) => [b.name, b.inconsistent, b.recording]);
        expect(names, t).toEqual(
          expect.arrayContaining([
            ["ct-2", false, true],
            ["ct-3", false, true],
          ]),
        );
      }
    });

    it("the job holding the domain: none when idle, backup while a pull backup runs", async () => {
      const f = fixture();
      const h = f.hypervisor;
      expect(await h.activeJob(f.domain, sig())).toBe("");
      await h.beginPullBackup(f.domain, { backupXml: backup(f, "job.sock") }, sig());
      try {
        expect(await h.activeJob(f.domain, sig())).toBe("backup");
      } finally {
        await h.endBackup(f.domain, sig());
      }
      expect(await h.activeJob(f.domain, sig())).toBe("");
      const err = await h.activeJob("cairn-no-such-domain", sig()).catch((e: unknown) => e);
      expect(isCairnError(err, "not-found"), String(err)).toBe(true);
    });

    it("a validated redefinition is refused when QEMU lacks the bitmap, and records nothing", async () => {
      const f = fixture();
      const h = f.hypervisor;
      const ct3 = await h.checkpoint(f.domain, "ct-3", sig());
      const ghost = ct3!.xml.replaceAll("ct-3", "ct-ghost");
      const err = await h
        .redefineCheckpoint(f.domain, ghost, { validate: true }, sig())
        .catch((e: unknown) => e);
      expect(isCairnError(err, "failed-precondition"), String(err)).toBe(true);
      expect(String((err as Error).message)).toMatch(/bitmap 'ct-ghost'/);
      expect((await h.listCheckpoints(f.domain, sig())).map((c) => c.name)).toEqual(["ct-2", "ct-3"]);
      // metadata only: the bitmaps stay in QEMU, so the same XML redefines with validation
      await h.deleteCheckpoint(f.domain, "ct-3", { metadataOnly: true }, sig());
      expect(await h.checkpoint(f.domain, "ct-3", sig())).toBeUndefined();
      await h.redefineCheckpoint(f.domain, ct3!.xml, { validate: true }, sig());
      expect((await h.checkpoint(f.domain, "ct-3", sig()))?.parent).toBe("ct-2");
    });
  });
}
