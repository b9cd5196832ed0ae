import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";

export interface FreezeMarker {
  domain: string;
  frozenAt: string;
  pid: number;
}

/**
 * Durable record of guests this agent is about to freeze. Written (and fsynced) before the freeze,
 * removed only after a confirmed thaw, so an agent that dies in between thaws the guest on restart.
 */
export class FreezeMarkers {
  constructor(private readonly dir: string) {}

  private path(domain: string): string {
    return join(this.dir, `${encodeURIComponent(domain)}.json`);
  }

  async add(domain: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const marker: FreezeMarker = { domain, frozenAt: new Date().toISOString(), pid: process.pid };
    const tmp = `${this.path(domain)}.tmp`;
    const fh = await open(tmp, "w");
    try {
      await fh.writeFile(JSON.stringify(marker));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path(domain));
    const dh = await open(this.dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async remove(domain: string): Promise<void> {
    await rm(this.path(domain), { force: true });
  }

  async list(): Promise<FreezeMarker[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: FreezeMarker[] = [];
    for (const n of names.filter((x) => x.endsWith(".json"))) {
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n), "utf8")) as FreezeMarker);
      } catch {
        // A torn marker still names its domain in the file name: thaw it anyway.
        out.push({ domain: decodeURIComponent(n.slice(0, -5)), frozenAt: "", pid: 0 });
      }
    }
    return out;
  }
}
