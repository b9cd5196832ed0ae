import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { DomainInfo, DomainPowerState } from "./DomainInfo.js";
import type { Hypervisor, LiveBitmap } from "./Hypervisor.js";
import {
  type BackupJobInfo,
  type CheckpointInfo,
  parseBackupJobXml,
  parseCheckpointXml,
} from "./parseCheckpointXml.js";
import { parseDomainXml } from "./parseDomainXml.js";
import { parseDomJobInfo } from "./parseDomJobInfo.js";
import { spawnRunner, type VirshRunner } from "./runVirsh.js";

export interface VirshHypervisorConfig {
  /** libvirt connection URI, e.g. "qemu:///system" or "qemu+unix:///system?socket=…". */
  uri: string;
  /** Deadline for a single virsh call. */
  callTimeoutMs: number;
  /** How commands run: a pooled session (VirshSessionPool.run) or, by default, one process each. */
  runner?: VirshRunner;
}

const STATES: Record<string, DomainPowerState> = {
  running: "running",
  idle: "blocked",
  blocked: "blocked",
  paused: "paused",
  "in shutdown": "shutdown",
  "shut off": "shutoff",
  crashed: "crashed",
  pmsuspended: "pmsuspended",
};

/** Hypervisor adapter over libvirt through the virsh CLI (the npm bindings lack checkpoints/backup). */
export class VirshHypervisor implements Hypervisor {
  private readonly runner: VirshRunner;

  constructor(private readonly config: VirshHypervisorConfig) {
    this.runner = config.runner ?? spawnRunner(config.uri);
  }

  private virsh(args: string[], signal: AbortSignal): Promise<string> {
    return this.runner(args, { signal, timeoutMs: this.config.callTimeoutMs });
  }

  async versions(signal: AbortSignal): Promise<{ libvirt: string; qemu: string }> {
    const out = await this.virsh(["version"], signal);
    return {
      libvirt: /Using library: libvirt (\S+)/.exec(out)?.[1] ?? "",
      qemu: /Running hypervisor: QEMU (\S+)/.exec(out)?.[1] ?? "",
    };
  }

  async listDomains(signal: AbortSignal): Promise<DomainInfo[]> {
    const [all, transient] = await Promise.all([
      this.virsh(["list", "--all", "--uuid"], signal),
      this.virsh(["list", "--transient", "--uuid"], signal),
    ]);
    const transientSet = new Set(lines(transient));
    const result: DomainInfo[] = [];
    for (const uuid of lines(all)) {
      // A transient domain can vanish between list and dumpxml: that is not an error.
      const d = await this.describe(uuid, !transientSet.has(uuid), signal);
      if (d) result.push(d);
    }
    return result;
  }

  domain(nameOrUuid: string, signal: AbortSignal): Promise<DomainInfo | undefined> {
    return this.describe(nameOrUuid, undefined, signal);
  }

  /**
   * One domain's info, undefined when libvirt has no such domain. Whether it is persistent comes
   * from the caller when it knows (listDomains), else from dominfo.
   */
  private async describe(
    ref: string,
    persistent: boolean | undefined,
    signal: AbortSignal,
  ): Promise<DomainInfo | undefined> {
    try {
      const [xml, state, info] = await Promise.all([
        this.virsh(["dumpxml", ref], signal),
        this.virsh(["domstate", ref], signal),
        persistent === undefined ? this.virsh(["dominfo", ref], signal) : undefined,
      ]);
      return {
        ...parseDomainXml(xml),
        state: STATES[state.trim()] ?? "unknown",
        persistent: persistent ?? /^Persistent:\s*(\S+)/m.exec(info ?? "")?.[1] !== "no",
      };
    } catch (err) {
      if (isCairnError(err, "not-found")) return undefined;
      throw err;
    }
  }

  domainXml(domain: string, opts: { inactive: boolean }, signal: AbortSignal): Promise<string> {
    return this.virsh(["dumpxml", domain, ...(opts.inactive ? ["--inactive"] : [])], signal);
  }

  async listCheckpoints(domain: string, signal: AbortSignal): Promise<CheckpointInfo[]> {
    const names = lines(await this.virsh(["checkpoint-list", domain, "--name", "--topological"], signal));
    const out: CheckpointInfo[] = [];
    for (const n of names)
      out.push(parseCheckpointXml(await this.virsh(["checkpoint-dumpxml", domain, n], signal)));
    return out;
  }

  async checkpoint(domain: string, name: string, signal: AbortSignal): Promise<CheckpointInfo | undefined> {
    try {
      return parseCheckpointXml(await this.virsh(["checkpoint-dumpxml", domain, name], signal));
    } catch (err) {
      // An unknown domain stays an error; only the checkpoint's absence is an answer.
      if (isCairnError(err, "not-found") && /checkpoint/i.test(err.message)) return undefined;
      throw err;
    }
  }

  async activeJob(domain: string, signal: AbortSignal): Promise<string> {
    try {
      return parseDomJobInfo(await this.virsh(["domjobinfo", domain], signal));
    } catch (err) {
      if (!isCairnError(err, "failed-precondition")) throw err;
      // On the destination of a migration libvirt 9.0 refuses domjobinfo with this (seen in the lab).
      if (/available only on the source host/i.test(err.message)) return "migration";
      if (/domain is not running/i.test(err.message)) return "";
      throw err;
    }
  }

  async deleteCheckpoint(domain: string, name: string, opts: { metadataOnly: boolean }, signal: AbortSignal) {
    await this.virsh(
      ["checkpoint-delete", domain, name, ...(opts.metadataOnly ? ["--metadata"] : [])],
      signal,
    );
  }

  async createCheckpoint(domain: string, xml: string, signal: AbortSignal): Promise<void> {
    // Refuse a duplicate ourselves: libvirt 9.0 does refuse it ("domain moment … already exists"),
    // but afterwards the domain's next backup job can no longer be ended (domjobabort returns, the
    // job stays; seen in the lab).
    const { name } = parseCheckpointXml(xml);
    const existing = lines(await this.virsh(["checkpoint-list", domain, "--name"], signal));
    if (existing.includes(name)) {
      throw new CairnError("failed-precondition", `domain ${domain} already has a checkpoint ${name}`, {
        hint: "checkpoint names must be unique per domain; pick another name",
      });
    }
    await this.withXmlFiles({ checkpoint: xml }, async (f) => {
      await this.virsh(["checkpoint-create", domain, f.checkpoint!], signal);
    });
  }

  async redefineCheckpoint(
    domain: string,
    xml: string,
    opts: { validate: boolean },
    signal: AbortSignal,
  ): Promise<void> {
    await this.withXmlFiles({ checkpoint: xml }, async (f) => {
      await this.virsh(
        [
          "checkpoint-create",
          domain,
          f.checkpoint!,
          "--redefine",
          ...(opts.validate ? ["--redefine-validate"] : []),
        ],
        signal,
      );
    });
  }

  async beginPullBackup(
    domain: string,
    docs: { backupXml: string; checkpointXml?: string; reuseScratch?: boolean; jobChecked?: boolean },
    signal: AbortSignal,
  ) {
    // A second backup-begin would wait 30 s for libvirt's job lock and then time out: refuse at once.
    if (!docs.jobChecked && (await this.backupJob(domain, signal))) {
      throw new CairnError("failed-precondition", `domain ${domain} already has a backup job running`, {
        hint: "wait for it to finish, or end it (cairn job cancel / virsh domjobabort) if it is stale",
      });
    }
    const files: Record<string, string> = { backup: docs.backupXml };
    if (docs.checkpointXml) files["checkpoint"] = docs.checkpointXml;
    await this.withXmlFiles(files, async (f) => {
      await this.virsh(
        [
          "backup-begin",
          domain,
          f["backup"]!,
          ...(f["checkpoint"] ? [f["checkpoint"]] : []),
          ...(docs.reuseScratch ? ["--reuse-external"] : []),
        ],
        signal,
      );
    });
  }

  async backupJob(domain: string, signal: AbortSignal): Promise<BackupJobInfo | undefined> {
    try {
      return parseBackupJobXml(await this.virsh(["backup-dumpxml", domain], signal));
    } catch (err) {
      if (
        isCairnError(err, "failed-precondition") &&
        /no domain backup job|does not have|not active/i.test(err.message)
      ) {
        return undefined;
      }
      throw err;
    }
  }

  async endBackup(domain: string, signal: AbortSignal): Promise<void> {
    try {
      await this.virsh(["domjobabort", domain], signal);
    } catch (err) {
      if (
        isCairnError(err, "failed-precondition") &&
        /no job is active|not running|no active job/i.test(err.message)
      )
        return;
      throw err;
    }
    // domjobabort returns before libvirt has torn the job down (seen in CI: backup-dumpxml still
    // answered right after). Wait, bounded, so "ended" means ended for the next backup-begin.
    const deadline = Date.now() + 30_000;
    while (await this.backupJob(domain, signal)) {
      if (Date.now() > deadline) {
        throw new CairnError(
          "timeout",
          `the backup job of ${domain} did not end within 30 s of domjobabort`,
          {
            hint: "check virsh domjobinfo; libvirtd may be stuck",
          },
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async liveBitmaps(domain: string, signal: AbortSignal): Promise<Map<string, LiveBitmap[]>> {
    const out = new Map<string, LiveBitmap[]>();
    for (const b of await this.bitmapNodes(domain, signal)) {
      out.set(b.target, [
        ...(out.get(b.target) ?? []),
        { name: b.name, inconsistent: b.inconsistent, recording: b.recording },
      ]);
    }
    return out;
  }

  async removeInconsistentBitmaps(domain: string, signal: AbortSignal): Promise<string[]> {
    const removed: string[] = [];
    for (const b of await this.bitmapNodes(domain, signal)) {
      if (!b.inconsistent) continue;
      await this.qmp(domain, "block-dirty-bitmap-remove", { node: b.node, name: b.name }, signal);
      removed.push(`${b.target}/${b.name}`);
    }
    return removed;
  }

  /** Dirty bitmaps of the domain's qcow2 nodes, mapped to disk targets. */
  private async bitmapNodes(domain: string, signal: AbortSignal) {
    // qemu-img info -U cannot see bitmaps of a running QEMU: ask QEMU itself.
    const [xml, nodes] = await Promise.all([
      this.domainXml(domain, { inactive: false }, signal),
      this.qmp<QmpBlockNode[]>(domain, "query-named-block-nodes", { flat: true }, signal),
    ]);
    const bySource = new Map(parseDomainXml(xml).disks.map((d) => [d.source, d.target]));
    const out: { target: string; node: string; name: string; inconsistent: boolean; recording: boolean }[] =
      [];
    for (const n of nodes) {
      const target = bySource.get(n.file);
      if (!target || n.drv !== "qcow2") continue;
      for (const b of n["dirty-bitmaps"] ?? []) {
        out.push({
          target,
          node: n["node-name"],
          name: b.name,
          inconsistent: Boolean(b.inconsistent),
          recording: b.recording !== false,
        });
      }
    }
    return out;
  }

  private async qmp<T = unknown>(
    domain: string,
    execute: string,
    args: unknown,
    signal: AbortSignal,
  ): Promise<T> {
    const out = await this.virsh(
      ["qemu-monitor-command", domain, JSON.stringify({ execute, arguments: args })],
      signal,
    );
    return (JSON.parse(out) as { return: T }).return;
  }

  /** virsh takes documents as files: write them to a private temp dir for the call's duration. */
  private async withXmlFiles<T>(
    docs: Record<string, string>,
    fn: (files: Record<string, string>) => Promise<T>,
  ) {
    const dir = await mkdtemp(join(tmpdir(), "cairn-virsh-"));
    try {
      const files: Record<string, string> = {};
      for (const [k, v] of Object.entries(docs)) {
        files[k] = join(dir, `${k}.xml`);
        await writeFile(files[k], v, { mode: 0o600 });
      }
      return await fn(files);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

interface QmpBlockNode {
  "node-name": string;
  drv: string;
  file: string;
  "dirty-bitmaps"?: { name: string; inconsistent?: boolean; persistent?: boolean; recording?: boolean }[];
}

function lines(s: string): string[] {
  return s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}
