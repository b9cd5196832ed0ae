/**
 * `virsh domjobinfo` (no --completed) → the job holding the domain: "" none, "backup", "migration",
 * or libvirt's operation name in lower case. libvirt 9.0 prints "Job type: None" without a job and
 * "Operation: Outgoing migration" / "Operation: Backup" with one.
 */
export function parseDomJobInfo(text: string): string {
  const type = /^Job type:\s*(.+?)\s*$/m.exec(text)?.[1] ?? "";
  if (!type || type === "None") return "";
  const op = (/^Operation:\s*(.+?)\s*$/m.exec(text)?.[1] ?? "").toLowerCase();
  if (op.includes("migration")) return "migration";
  return op || "unknown";
}
