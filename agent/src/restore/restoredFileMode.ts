/**
 * The permission bits a restored configuration file gets from the mode a manifest records. A
 * manifest is not trusted to grant anything (issue #24, hole 6: a crafted one produced a setuid
 * 4755 file): setuid, setgid and sticky are dropped, and so is everything but the owner's read and
 * write (NVRAM and swtpm state are private to the domain; libvirt and swtpm create them 0600).
 */
export function restoredFileMode(recorded: number | undefined): number {
  return (recorded ?? 0o600) & 0o600;
}
