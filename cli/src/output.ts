import { renderTable } from "../../shared/src/cli/renderTable.js";

/** JSON for scripts (bigints as numbers), text for people. */
export function output(json: boolean | undefined, data: unknown, human: () => string): void {
  process.stdout.write(
    json ? `${JSON.stringify(data, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}\n` : human(),
  );
}

export function table(headers: string[], rows: (string | number)[][]): string {
  return rows.length ? renderTable(headers, rows) : "(none)\n";
}

export function ago(ms: bigint | number): string {
  const t = Number(ms);
  if (!t) return "never";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 129600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function when(ms: bigint | number): string {
  const t = Number(ms);
  return t ? new Date(t).toISOString().replace(/\.\d+Z$/, "Z") : "-";
}
