import type { DomainInfo } from "../../../agent/src/hypervisor/DomainInfo.js";
import type { Hypervisor, LiveBitmap } from "../../../agent/src/hypervisor/Hypervisor.js";
import {
  type BackupJobInfo,
  type CheckpointInfo,
  parseBackupJobXml,
  parseCheckpointXml,
} from "../../../agent/src/hypervisor/parseCheckpointXml.js";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";

interface FakeDomainState {
  checkpoints: CheckpointInfo[];
  job: BackupJobInfo | undefined;
  /** The dirty bitmaps in the disks' images ("target/name"), apart from libvirt's metadata. */
  bitmaps: Set<string>;
}

/** In-memory Hypervisor for unit tests of logic; passes the same contract suites as VirshHypervisor. */
export class FakeHypervisor implements Hypervisor {
  private readonly state = new Map<string, FakeDomainState>();

  constructor(public domains: DomainInfo[] = []) {}

  private find(domain: string, signal: AbortSignal, what: string): { info: DomainInfo; st: FakeDomainState } {
    if (signal.aborted) throw abortError(signal, what);
    const info = this.lookup(domain);
    if (!info) throw new CairnError("not-found", `domain ${domain} not found`);
    let st = this.state.get(info.uuid);
    if (!st) {
      st = { checkpoints: [], job: undefined, bitmaps: new Set() };
      this.state.set(info.uuid, st);
    }
    return { info, st };
  }

  async versions(signal: AbortSignal) {
    if (signal.aborted) throw abortError(signal, "versions");
    return { libvirt: "9.0.0", qemu: "7.2.0" };
  }

  async listDomains(signal: AbortSignal) {
    if (signal.aborted) throw abortError(signal, "listDomains");
    return structuredClone(this.domains);
  }

  async domain(nameOrUuid: string, signal: AbortSignal) {
    if (signal.aborted) throw abortError(signal, "domain");
    const d = this.lookup(nameOrUuid);
    return d ? structuredClone(d) : undefined;
  }

  private lookup(nameOrUuid: string): DomainInfo | undefined {
    return this.domains.find((d) => d.name === nameOrUuid || d.uuid === nameOrUuid);
  }

  async domainXml(domain: string, _opts: { inactive: boolean }, signal: AbortSignal) {
    const { info } = this.find(domain, signal, "domainXml");
    return `<domain type='kvm'><name>${info.name}</name><uuid>${info.uuid}</uuid></domain>`;
  }

  async listCheckpoints(domain: string, signal: AbortSignal) {
    return structuredClone(this.find(domain, signal, "listCheckpoints").st.checkpoints);
  }

  async checkpoint(domain: string, name: string, signal: AbortSignal) {
    const cp = this.find(domain, signal, "checkpoint").st.checkpoints.find((c) => c.name === name);
    return cp ? structuredClone(cp) : undefined;
  }

  /** Libvirt jobs holding domains (by name), as `domjobinfo` would say: "migration", … */
  readonly jobs = new Map<string, string>();

  async activeJob(domain: string, signal: AbortSignal) {
    const { info, st } = this.find(domain, signal, "activeJob");
    if (info.state !== "running" && info.state !== "paused") return "";
    return this.jobs.get(info.name) ?? (st.job ? "backup" : "");
  }

  async deleteCheckpoint(domain: string, name: string, opts: { metadataOnly: boolean }, signal: AbortSignal) {
    const { st } = this.find(domain, signal, "deleteCheckpoint");
    const i = st.checkpoints.findIndex((c) => c.name === name);
    if (i < 0) throw new CairnError("not-found", `checkpoint ${name} not found`);
    const [gone] = st.checkpoints.splice(i, 1);
    // A full delete merges the bitmaps away; --metadata leaves them in the images.
    if (!opts.metadataOnly)
      for (const [t, b] of Object.entries(gone?.bitmaps ?? {})) st.bitmaps.delete(`${t}/${b}`);
    for (const c of st.checkpoints) if (c.parent === name) c.parent = gone?.parent;
  }

  async createCheckpoint(domain: string, xml: string, signal: AbortSignal) {
    const { info, st } = this.find(domain, signal, "createCheckpoint");
    if (info.state !== "running")
      throw new CairnError("failed-precondition", `domain ${domain} is not running`);
    this.addCheckpoint(st, xml);
  }

  private addCheckpoint(st: FakeDomainState, xml: string) {
    const cp = parseCheckpointXml(xml);
    if (st.checkpoints.some((c) => c.name === cp.name)) {
      throw new CairnError("failed-precondition", `checkpoint ${cp.name} already exists`);
    }
    cp.parent = st.checkpoints.at(-1)?.name;
    cp.creationTime = Math.floor(Date.now() / 1000);
    for (const [t, b] of Object.entries(cp.bitmaps)) st.bitmaps.add(`${t}/${b}`);
    // Like libvirt's checkpoint-dumpxml: the stored document names its parent.
    if (cp.parent)
      cp.xml = cp.xml.replace("</name>", `</name>\n  <parent><name>${cp.parent}</name></parent>`);
    st.checkpoints.push(cp);
  }

  async redefineCheckpoint(domain: string, xml: string, opts: { validate: boolean }, signal: AbortSignal) {
    const { info, st } = this.find(domain, signal, "redefineCheckpoint");
    const cp = parseCheckpointXml(xml);
    if (st.checkpoints.some((c) => c.name === cp.name)) {
      throw new CairnError("failed-precondition", `checkpoint ${cp.name} already exists`);
    }
    if (opts.validate) {
      // As libvirt 9.0: validation asks the running QEMU, and wants the bitmap of every disk the
      // checkpoint tracks there, consistent and recording (disks with checkpoint='no' unchecked).
      if (info.state !== "running" && info.state !== "paused")
        throw new CairnError(
          "failed-precondition",
          "Requested operation is not valid: domain is not running",
        );
      const live = await this.liveBitmaps(domain, signal);
      for (const [t, b] of Object.entries(cp.bitmaps)) {
        const found = live.get(t)?.find((x) => x.name === b);
        if (!found || found.inconsistent || found.recording === false)
          throw new CairnError(
            "failed-precondition",
            `checkpoint inconsistent: missing or broken bitmap '${b}' for disk '${t}'`,
          );
      }
    }
    st.checkpoints.push(cp);
  }

  /** A bitmap in a disk's image without checkpoint metadata (as after a migration to this host). */
  addBitmap(domain: string, target: string, name: string): void {
    this.find(domain, new AbortController().signal, "addBitmap").st.bitmaps.add(`${target}/${name}`);
  }

  async beginPullBackup(
    domain: string,
    docs: { backupXml: string; checkpointXml?: string; reuseScratch?: boolean; jobChecked?: boolean },
    signal: AbortSignal,
  ) {
    const { info, st } = this.find(domain, signal, "beginPullBackup");
    if (info.state !== "running")
      throw new CairnError("failed-precondition", `domain ${domain} is not running`);
    if (st.job)
      throw new CairnError("failed-precondition", `domain ${domain} already has an active backup job`);
    const job = parseBackupJobXml(docs.backupXml);
    for (const d of job.disks) {
      if (d.incremental && !st.checkpoints.some((c) => c.name === d.incremental)) {
        throw new CairnError("not-found", `checkpoint ${d.incremental} not found`);
      }
      if (d.incremental) d.exportBitmap = `backup-${d.target}`;
    }
    if (docs.checkpointXml) this.addCheckpoint(st, docs.checkpointXml);
    st.job = job;
  }

  async backupJob(domain: string, signal: AbortSignal) {
    return structuredClone(this.find(domain, signal, "backupJob").st.job);
  }

  /** Bitmaps ("domain/target/name") lost or broken, as after QEMU is killed. */
  readonly missing = new Set<string>();
  readonly inconsistent = new Set<string>();
  /** Bitmaps ("domain/target/name") present but not recording (disabled). */
  readonly disabled = new Set<string>();

  /** Like SIGKILL of QEMU: runtime-created bitmaps were never saved to the images. */
  crash(domain: string): void {
    const info = this.domains.find((d) => d.name === domain || d.uuid === domain);
    for (const c of this.state.get(info?.uuid ?? "")?.checkpoints ?? []) {
      for (const [t, b] of Object.entries(c.bitmaps)) this.missing.add(`${info?.name}/${t}/${b}`);
    }
  }

  async liveBitmaps(domain: string, signal: AbortSignal) {
    const { info, st } = this.find(domain, signal, "liveBitmaps");
    const out = new Map<string, LiveBitmap[]>();
    for (const tb of st.bitmaps) {
      const [t, b] = tb.split("/") as [string, string];
      const key = `${info.name}/${t}/${b}`;
      if (this.missing.has(key)) continue;
      out.set(t, [
        ...(out.get(t) ?? []),
        { name: b, inconsistent: this.inconsistent.has(key), recording: !this.disabled.has(key) },
      ]);
    }
    return out;
  }

  async removeInconsistentBitmaps(domain: string, signal: AbortSignal) {
    const { info } = this.find(domain, signal, "removeInconsistentBitmaps");
    const removed = [...this.inconsistent].filter((k) => k.startsWith(`${info.name}/`));
    for (const k of removed) {
      this.inconsistent.delete(k);
      this.missing.add(k);
    }
    return removed.map((k) => k.slice(info.name.length + 1));
  }

  async endBackup(domain: string, signal: AbortSignal) {
    this.find(domain, signal, "endBackup").st.job = undefined;
  }
}

export const sampleDomain: DomainInfo = {
  uuid: "6f1c2b8e-3d47-4a51-9d0e-000000000001",
  name: "web-1",
  state: "running",
  persistent: true,
  disks: [
    { target: "vda", format: "qcow2", source: "/var/lib/libvirt/images/web-1.qcow2", device: "disk" },
    { target: "vdb", format: "raw", source: "/dev/vg0/web-1-data", device: "disk" },
  ],
  labels: { tier: "web" },
  hasGuestAgentChannel: true,
};
