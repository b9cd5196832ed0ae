import type { JobRecord } from "../../../coordinator/src/store/records.js";
import { BackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import {
  eventually,
  startTestCoordinator,
  type TestCoordinator,
  waitForJobEnd,
} from "../../support/coordinatorHarness.js";
import { LabAgent } from "./LabAgent.js";
import type { LabHost } from "./LabHost.js";
import type { LabDiskSpec, LabVm } from "./LabVm.js";
import { Lab } from "./lab.js";
import { restoredDiskHash } from "./restoredDiskHash.js";

/**
 * The checkpoint ledger's lab: two libvirt hosts (the lab's second libvirtd), a real agent daemon on
 * each ("kvm-a", "kvm-b"), one coordinator, and one booted VM on kvm-a selected by policy "lab".
 */
export class LedgerLab {
  c!: TestCoordinator;
  host2!: LabHost;
  a!: LabAgent;
  b!: LabAgent;
  vm!: LabVm;

  constructor(readonly lab = new Lab()) {}

  async start(label: string, disks: LabDiskSpec[]): Promise<void> {
    this.c = await startTestCoordinator({ heartbeatIntervalSeconds: 1, lostAfterSeconds: 6 });
    this.host2 = await this.lab.startSecondHost();
    this.a = await LabAgent.enroll(this.c, "kvm-a");
    this.b = await LabAgent.enroll(this.c, "kvm-b", {}, this.host2.uri);
    this.vm = await this.lab.createVm({ label, disks });
    await this.vm.boot();
    await Promise.all([this.a.start(), this.b.start()]);
    await eventually("the VM in the inventory on kvm-a", async () =>
      (await this.c.admin().listVms({ hostId: "kvm-a" })).vms.some((v) => v.name === this.vm.name),
    );
    await this.c.admin().applyPolicy({
      yaml: `name: lab\nselector: {names: [${this.vm.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 100}\nrepository: main\n`,
    });
  }

  async dispose(): Promise<void> {
    await this.a?.kill();
    await this.b?.kill();
    await this.lab.dispose();
    await this.c?.dispose();
  }

  /** A backup of the VM through the coordinator, waited for. */
  async backup(mode = BackupMode.BACKUP_MODE_INCREMENTAL, timeoutMs = 240_000): Promise<JobRecord> {
    const { jobId } = await this.c.admin().backupNow({ vm: this.vm.name, policy: "lab", mode });
    return waitForJobEnd(this.c, jobId, timeoutMs);
  }

  chain() {
    return this.c.admin().showVmChain({ vm: this.vm.name, events: 50 });
  }

  /** Bytes the backup that made `snapshotId` read (its manifest's stats). */
  async bytesRead(snapshotId: string | null): Promise<number> {
    const s = await this.c.running.ctx.store.getSnapshot(snapshotId ?? "");
    return (JSON.parse(s?.manifestJson ?? "{}") as { stats?: { bytesRead?: number } }).stats?.bytesRead ?? -1;
  }

  /** Restores one disk of a snapshot with `cairn restore disk` and compares it with the guest's device. */
  async restoreMatches(snapshotId: string, target: string): Promise<boolean> {
    return (
      (await restoredDiskHash(this.c, snapshotId, target)) === (await this.vm.deviceHash(`/dev/${target}`))
    );
  }
}
