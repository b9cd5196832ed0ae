import { lstat, mkdtemp, rm, statfs, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XMLParser } from "fast-xml-parser";
import { abortError, CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { VirshRunner } from "../hypervisor/runVirsh.js";
import type { PoolInfo, RestoreHost } from "./RestoreHost.js";

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (name) => ["guest", "machine", "enum", "value"].includes(name),
});
type Node = Record<string, unknown>;
const nodes = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v ? [v as Node] : []);
const textOf = (n: unknown): string =>
  (typeof n === "object" && n !== null ? String((n as Node)["#text"] ?? "") : String(n ?? "")).trim();

/** RestoreHost over virsh (argument arrays, through the agent's runner) and this host's filesystem. */
export class LibvirtRestoreHost implements RestoreHost {
  constructor(
    private readonly hypervisor: Hypervisor,
    private readonly runner: VirshRunner,
    private readonly callTimeoutMs = 60_000,
  ) {}

  private virsh(args: string[], signal: AbortSignal, timeoutMs = this.callTimeoutMs): Promise<string> {
    return this.runner(args, { signal, timeoutMs });
  }

  domain(nameOrUuid: string, signal: AbortSignal): Promise<DomainInfo | undefined> {
    return this.hypervisor.domain(nameOrUuid, signal);
  }

  inactiveXml(uuid: string, signal: AbortSignal): Promise<string> {
    return this.hypervisor.domainXml(uuid, { inactive: true }, signal);
  }

  async machineTypes(arch: string, signal: AbortSignal): Promise<string[]> {
    const caps = parser.parse(await this.virsh(["capabilities"], signal)) as { capabilities?: Node };
    const names = new Set<string>();
    for (const g of nodes(caps.capabilities?.["guest"])) {
      const a = g["arch"] as Node | undefined;
      if (String(a?.["@name"] ?? "") !== arch) continue;
      for (const m of nodes(a?.["machine"])) {
        names.add(textOf(m));
        if (m["@canonical"]) names.add(String(m["@canonical"]));
      }
    }
    return [...names].filter(Boolean);
  }

  async firmwares(signal: AbortSignal): Promise<string[]> {
    const caps = parser.parse(await this.virsh(["domcapabilities"], signal)) as { domainCapabilities?: Node };
    const os = caps.domainCapabilities?.["os"] as Node | undefined;
    const e = nodes(os?.["enum"]).find((x) => x["@name"] === "firmware");
    return nodes(e?.["value"]).map(textOf);
  }

  async pool(name: string, signal: AbortSignal): Promise<PoolInfo | undefined> {
    let info: string;
    try {
      info = await this.virsh(["pool-info", "--bytes", name], signal);
    } catch (e) {
      if (isCairnError(e) && /no storage pool with matching|Storage pool not found/i.test(e.message))
        return undefined;
      throw e;
    }
    const xml = parser.parse(await this.virsh(["pool-dumpxml", name], signal)) as { pool?: Node };
    const field = (k: string) => new RegExp(`^${k}:\\s*(.+)$`, "m").exec(info)?.[1]?.trim() ?? "";
    return {
      name,
      type: String(xml.pool?.["@type"] ?? ""),
      active: field("State") === "running",
      path: textOf((xml.pool?.["target"] as Node | undefined)?.["path"]),
      availableBytes: Number(field("Available").split(/\s/)[0] ?? 0) || 0,
    };
  }

  async freeBytes(dir: string, signal: AbortSignal): Promise<number> {
    if (signal.aborted) throw abortError(signal, `statfs ${dir}`);
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  }

  async exists(path: string, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) throw abortError(signal, `lstat ${path}`);
    try {
      await lstat(path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw new CairnError("failed-precondition", `cannot look at ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }

  async createVolume(
    pool: string,
    name: string,
    bytes: number,
    format: "raw" | "qcow2",
    signal: AbortSignal,
  ): Promise<string> {
    const type = (await this.pool(pool, signal))?.type;
    // A logical volume has no format of its own; libvirt refuses --format for one.
    const fmt = type === "logical" ? [] : ["--format", format];
    await this.virsh(["vol-create-as", pool, name, String(bytes), ...fmt], signal, 5 * 60_000);
    return (await this.virsh(["vol-path", "--pool", pool, name], signal)).trim();
  }

  async deleteVolume(pool: string, name: string, signal: AbortSignal): Promise<void> {
    await this.virsh(["vol-delete", "--pool", pool, name], signal);
  }

  async define(xml: string, signal: AbortSignal): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), "cairn-restore-"));
    try {
      const file = join(dir, "domain.xml");
      await writeFile(file, xml, { mode: 0o600 });
      await this.virsh(["define", file], signal);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async undefine(uuid: string, signal: AbortSignal): Promise<void> {
    // The NVRAM file is the restore's: its own undo step removes it.
    await this.virsh(["undefine", uuid, "--keep-nvram"], signal);
  }

  async start(uuid: string, signal: AbortSignal): Promise<void> {
    await this.virsh(["start", uuid], signal, 5 * 60_000);
  }

  async forgetCheckpoints(uuid: string, signal: AbortSignal): Promise<string[]> {
    const names = (await this.virsh(["checkpoint-list", uuid, "--name", "--topological"], signal))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    // Children before parents; metadata only: the disks were replaced, their bitmaps went with them.
    for (const name of [...names].reverse())
      await this.virsh(["checkpoint-delete", uuid, name, "--metadata"], signal);
    return names;
  }
}
