import { z } from "zod";
import { loadYamlConfig } from "../../../shared/src/config/loadYamlConfig.js";
import { parseYamlConfig } from "../../../shared/src/config/parseYamlConfig.js";
import { DEFAULT_NVRAM_DIR, DEFAULT_SWTPM_STATE_DIR } from "../vmconfig/captureVmConfigFiles.js";

/** The agent's configuration file (YAML), validated; every field has a documented default. */
export const agentConfigSchema = z
  .object({
    /** Stable id of this host in the fleet (default: the machine's hostname). */
    hostId: z.string().min(1).optional(),
    libvirtUri: z.string().min(1).default("qemu:///system"),
    /** Agent state: freeze markers, job work directories (NBD sockets, scratch images). */
    stateDir: z.string().min(1).default("/var/lib/cairn-agent"),
    /** gRPC listen address of the AgentService. */
    listen: z.string().min(1).default("127.0.0.1:7460"),
    qemuUser: z.string().min(1).default("libvirt-qemu"),
    qemuGroup: z.string().min(1).default("kvm"),
    /** libvirt's swtpm_user/swtpm_group (qemu.conf): a restored TPM state is owned by them. */
    swtpmUser: z.string().min(1).default("tss"),
    swtpmGroup: z.string().min(1).default("tss"),
    /** libvirt's swtpm state root (a domain's TPM state is <dir>/<uuid>/), backed up with each snapshot. */
    swtpmStateDir: z.string().min(1).default(DEFAULT_SWTPM_STATE_DIR),
    /** libvirt's nvram_dir: where it puts the NVRAM of `<os firmware='efi'>` domains that name none. */
    nvramDir: z.string().min(1).default(DEFAULT_NVRAM_DIR),
    timeouts: z
      .object({
        virshCallMs: z.number().int().positive().default(60_000),
        guestPingMs: z.number().int().positive().default(5_000),
        freezeMs: z.number().int().positive().default(10_000),
        thawMs: z.number().int().positive().default(10_000),
        /** Watchdog: a guest is never left frozen longer than this. */
        maxFrozenMs: z.number().int().positive().default(30_000),
        hookMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .prefault({}),
    nbd: z
      .object({
        // Bytes per NBD READ. Larger than a repository chunk, one READ fills several chunk buffers
        // (2 GiB full backup, interleaved runs: 1 MiB took ~0.5 CPU-s less in the agent and ~0.3
        // in QEMU than 256 KiB, ~7% less wall time).
        requestSize: z
          .number()
          .int()
          .min(4096)
          .max(32 * 1024 * 1024)
          .default(1024 * 1024),
        depth: z.number().int().min(1).max(256).default(16),
      })
      .strict()
      .prefault({}),
    /** The coordinator this agent reports to; absent = standalone (local CLI and direct gRPC only). */
    coordinator: z
      .object({
        /** host:port of the coordinator's gRPC endpoint. */
        address: z.string().min(1),
        /** Address the coordinator dials to reach this agent (default: listen). */
        advertiseAddress: z.string().min(1).optional(),
        /** How often the agent looks for domain changes to report. */
        inventoryPollSeconds: z.number().min(0.2).max(3600).default(5),
      })
      .strict()
      .optional(),
    /** Key, certificate and CA from enrollment (`cairn-agent enroll`); default <stateDir>/identity. */
    identityDir: z.string().min(1).optional(),
    /** Prometheus endpoint of the agent; "" disables it. */
    metricsListen: z.string().default(""),
    /** Passphrase of encrypted repositories (file readable by the agent only). */
    repositoryPassphraseFile: z.string().min(1).optional(),
    /**
     * Bytes of free space backups leave on a local repository's filesystem, so lock records and
     * manifests still fit on a volume backups filled and prune, GC and verify can run. Default
     * 64 MiB (at most 2% of the filesystem); 0 turns it off. S3 repositories have no reserve.
     */
    localRepositoryReserveBytes: z.number().int().min(0).optional(),
    /** Chunk worker threads (hashing, zstd, encryption) per repository; default one per core but one. */
    chunkWorkers: z.number().int().min(1).max(64).optional(),
    /** What this agent does (docs/transfer-paths.md §1): hypervisor (libvirt), mover, or both. */
    roles: z
      .array(z.enum(["hypervisor", "mover"]))
      .min(1)
      .refine((r) => new Set(r).size === r.length, { message: "each role at most once" })
      .default(["hypervisor"]),
    /**
     * Extra access paths to repositories from this host (docs/transfer-paths.md §2): a repository
     * registered as s3://… may be a SAN filesystem here. Matched to registered ones by config id.
     */
    repositories: z.array(z.string().min(1)).default([]),
    /** The network transfer path (docs/transfer-paths.md §4–§7). */
    transfer: z
      .object({
        /** Address (IP or DNS name, no port) readers on other hosts reach this host's exports on. */
        address: z.string().min(1).optional(),
        /** qemu.conf's backup_tls_x509_cert_dir: the agent writes each job's credentials there (§5). */
        libvirtTlsDir: z.string().min(1).default("/var/lib/cairn-agent/backup-tls"),
        /** The qemu.conf libvirt's daemon reads (checked before a network export, §5). */
        libvirtQemuConf: z.string().min(1).default("/etc/libvirt/qemu.conf"),
        /** TCP ports network exports listen on (libvirt's pull backup and qemu-nbd). */
        portMin: z.number().int().min(1024).max(65535).default(10809),
        portMax: z.number().int().min(1024).max(65535).default(10899),
        /** How long an export waits for FinishExport once the coordinator's call ended. */
        readerTimeoutSeconds: z.number().int().min(1).max(86_400).default(600),
        /** Cap on all NBD reads this agent makes for jobs (a mover's link), bytes/s; 0 none. */
        maxReadBytesPerSecond: z.number().int().min(0).default(0),
        /** Cap on each network export this host serves, bytes/s; 0 none (honoured by the reader). */
        maxExportBytesPerSecond: z.number().int().min(0).default(0),
        /** For a mover appliance VM: the hypervisor host id it runs on (locality, §3). */
        applianceOf: z.string().min(1).optional(),
      })
      .strict()
      .refine((t) => t.portMin <= t.portMax, { message: "portMin must not exceed portMax" })
      .prefault({}),
    /** Bytes each repository probe writes and reads back (docs/transfer-paths.md §2). */
    probeBytes: z
      .number()
      .int()
      .min(4096)
      .max(1024 * 1024 * 1024)
      .default(8 * 1024 * 1024),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/** Parses and validates a config document; errors name the field and the reason. */
export function parseAgentConfig(text: string, source: string): AgentConfig {
  return parseYamlConfig(agentConfigSchema, text, source, "agent");
}

export function loadAgentConfig(path: string | undefined): Promise<AgentConfig> {
  return loadYamlConfig(path, "agent", parseAgentConfig);
}
