import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { DomainEventSource, LifecycleEvent } from "./DomainEventSource.js";
import { parseVirshEvent } from "./parseVirshEvent.js";

export interface VirshDomainEventSourceConfig {
  uri: string;
  log: Logger;
  /** First and largest wait before restarting a listener that died. */
  backoffMs?: { min: number; max: number };
}

/**
 * libvirt's event stream through one long-running `virsh event --all --loop --timestamp` child
 * (argument array, no shell). A listener that exits is restarted after a backoff that grows while
 * it keeps dying young; stopping kills it.
 */
export class VirshDomainEventSource implements DomainEventSource {
  constructor(private readonly config: VirshDomainEventSourceConfig) {}

  async run(
    onEvent: (e: LifecycleEvent) => void,
    signal: AbortSignal,
    opts: { onConnected?: () => void } = {},
  ): Promise<void> {
    const { min, max } = this.config.backoffMs ?? { min: 500, max: 30_000 };
    let backoff = min;
    while (!signal.aborted) {
      const started = Date.now();
      const reason = await this.listen(onEvent, signal, opts.onConnected);
      if (signal.aborted) return;
      // A listener that ran a while was healthy: the next failure starts from the short wait.
      if (Date.now() - started > 10_000) backoff = min;
      this.config.log.warn(
        { uri: this.config.uri, reason, retryInMs: backoff },
        "libvirt event listener ended; restarting",
      );
      await sleep(backoff, undefined, { signal }).catch(() => {});
      backoff = Math.min(max, backoff * 2);
    }
  }

  /** One listener's life; resolves with why it ended. */
  private async listen(
    onEvent: (e: LifecycleEvent) => void,
    signal: AbortSignal,
    onConnected: (() => void) | undefined,
  ): Promise<string> {
    const child = execa("virsh", ["-c", this.config.uri, "event", "--all", "--loop", "--timestamp"], {
      cancelSignal: signal,
      reject: false,
      stdin: "ignore",
      stderr: "pipe",
      env: { LC_ALL: "C" },
    });
    child.catch(() => {});
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-2000);
    });
    const lines = createInterface({ input: child.stdout! });
    // virsh says nothing once registered: a child alive after a moment is taken as connected
    // (a bad URI or a stopped libvirtd makes it exit well within that).
    const connected = setTimeout(() => onConnected?.(), 300);
    try {
      for await (const line of lines) {
        const e = parseVirshEvent(line, Date.now());
        if (e) onEvent(e);
      }
      const r = await child;
      return `virsh event exited (code ${r.exitCode ?? r.signal ?? "?"}): ${stderr.trim() || "no message"}`;
    } catch (err) {
      return `virsh event failed: ${(err as Error).message}`;
    } finally {
      clearTimeout(connected);
      lines.close();
      if (child.exitCode === null) child.kill("SIGTERM");
    }
  }
}
