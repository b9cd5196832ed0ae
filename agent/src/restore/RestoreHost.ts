import type { DomainInfo } from "../hypervisor/DomainInfo.js";

/** A libvirt storage pool as a restore needs to know it. */
export interface PoolInfo {
  name: string;
  /** libvirt's pool type: "dir", "logical", "fs", "netfs", "disk", "iscsi", ... */
  type: string;
  active: boolean;
  /** The pool's target path (a directory for dir pools, /dev/<vg> for logical ones). */
  path: string;
  availableBytes: number;
}

/**
 * Port: what a VM restore asks of this host (libvirt and its filesystem). Every method takes an
 * AbortSignal; failures are CairnError. The facts (domain, pool, machineTypes, firmwares,
 * freeBytes, exists) change nothing; the rest each make one change the restore can take back.
 */
export interface RestoreHost {
  /** A domain by name or uuid, or undefined when libvirt has none. */
  domain(nameOrUuid: string, signal: AbortSignal): Promise<DomainInfo | undefined>;
  /** The persistent definition of a domain. */
  inactiveXml(uuid: string, signal: AbortSignal): Promise<string>;
  /** Machine types (names and aliases) the host's QEMU offers for an architecture. */
  machineTypes(arch: string, signal: AbortSignal): Promise<string[]>;
  /** Firmware kinds libvirt can select for `<os firmware=…>` ("efi", "bios"). */
  firmwares(signal: AbortSignal): Promise<string[]>;
  pool(name: string, signal: AbortSignal): Promise<PoolInfo | undefined>;
  /** Bytes this agent (root) may still write on the filesystem of `dir` (statfs). */
  freeBytes(dir: string, signal: AbortSignal): Promise<number>;
  /** Whether anything is at `path` (lstat: a dangling symlink exists). */
  exists(path: string, signal: AbortSignal): Promise<boolean>;
  /** Creates a volume in a pool; resolves its path. */
  createVolume(
    pool: string,
    name: string,
    bytes: number,
    format: "raw" | "qcow2",
    signal: AbortSignal,
  ): Promise<string>;
  deleteVolume(pool: string, name: string, signal: AbortSignal): Promise<void>;
  /** Defines a persistent domain from its XML. */
  define(xml: string, signal: AbortSignal): Promise<void>;
  /** Removes a (shut off) domain's definition; its NVRAM file is the restore's to remove. */
  undefine(uuid: string, signal: AbortSignal): Promise<void>;
  start(uuid: string, signal: AbortSignal): Promise<void>;
  /**
   * Deletes the metadata of every checkpoint of a domain (children first); resolves their names.
   * After an in-place restore no checkpoint describes the disks any more.
   */
  forgetCheckpoints(uuid: string, signal: AbortSignal): Promise<string[]>;
}
