import type { VirshRunner } from "./runVirsh.js";
import { VirshSession } from "./VirshSession.js";

/**
 * A small pool of warm virsh sessions for one libvirt URI, as a VirshRunner: concurrent callers get
 * separate sessions (a command that blocks in libvirt blocks only its own), idle ones close after
 * `idleMs`. With every session busy and the pool full, a call waits for the next free one.
 */
export class VirshSessionPool {
  private readonly sessions: VirshSession[] = [];
  /** Sessions handed out and not yet returned (claimed synchronously, so two callers never share one). */
  private readonly inUse = new Set<VirshSession>();
  private readonly waiters: (() => void)[] = [];
  private readonly reaper: NodeJS.Timeout;

  constructor(
    private readonly uri: string,
    private readonly max = 4,
    idleMs = 60_000,
  ) {
    this.reaper = setInterval(() => {
      for (const s of [...this.sessions]) {
        if (!this.inUse.has(s) && Date.now() - s.lastUsed > idleMs) {
          s.kill();
          this.sessions.splice(this.sessions.indexOf(s), 1);
        }
      }
    }, idleMs);
    this.reaper.unref();
  }

  readonly run: VirshRunner = async (args, opts) => {
    const s = await this.acquire();
    try {
      return await s.run(args, opts);
    } finally {
      this.inUse.delete(s);
      this.waiters.shift()?.();
    }
  };

  private async acquire(): Promise<VirshSession> {
    for (;;) {
      const idle = this.sessions.find((s) => !this.inUse.has(s));
      if (idle) {
        this.inUse.add(idle);
        return idle;
      }
      if (this.sessions.length < this.max) {
        const s = new VirshSession(this.uri);
        this.sessions.push(s);
        this.inUse.add(s);
        return s;
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  close(): void {
    clearInterval(this.reaper);
    for (const s of this.sessions.splice(0)) s.kill();
  }
}
