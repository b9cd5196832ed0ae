import { formatBytes } from "../units/formatBytes.js";
/** A one-line progress bar on stderr for people at a terminal; silent when stderr is not a TTY. */
export class ProgressBar {
  private lastLen = 0;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(p: {
    bytesDone: number;
    bytesTotal: number;
    rate: number;
    etaSeconds: number;
    phase?: string;
  }): void {
    if (!this.tty) return;
    const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
    const eta = p.etaSeconds >= 0 ? ` ETA ${formatDuration(p.etaSeconds)}` : "";
    const line = `${this.label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} ${formatBytes(p.rate)}/s${eta}`;
    this.out.write(`\r${line}${" ".repeat(Math.max(0, this.lastLen - line.length))}`);
    this.lastLen = line.length;
  }

  done(): void {
    if (this.tty && this.lastLen) this.out.write("\n");
    this.lastLen = 0;
  }
}

export function formatDuration(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
