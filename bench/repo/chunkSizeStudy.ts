/**
 * Chooses the default chunk size: incremental amplification (bytes of new chunks an incremental
 * stores per dirty byte) against index size, for workloads seen by a dirty bitmap with QEMU's
 * default 64 KiB granularity. Deterministic (seeded); prints a markdown table for the format doc.
 * Run: node --import tsx bench/repo/chunkSizeStudy.ts
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;
const DISK = 16 * 1024 * MiB;
const GRANULE = 64 * KiB;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

type Write = [offset: number, length: number];

const workloads: Record<string, (r: () => number) => Write[]> = {
  // The agent benchmark's workload: 5 % of the disk in 1 MiB extents at random 64 KiB-aligned offsets.
  "5% in 1 MiB extents": (r) =>
    Array.from({ length: (DISK * 0.05) / MiB }, () => [
      Math.floor((r() * (DISK - MiB)) / GRANULE) * GRANULE,
      MiB,
    ]),
  // A database: 20 000 random 8 KiB page writes.
  "20k random 8 KiB pages": (r) =>
    Array.from({ length: 20_000 }, () => [Math.floor((r() * DISK) / (8 * KiB)) * 8 * KiB, 8 * KiB]),
  // A filesystem: writes of 4 KiB..1 MiB clustered into a few hot regions (logs, metadata, new files).
  "clustered 4 KiB-1 MiB": (r) => {
    const hot = Array.from({ length: 32 }, () => Math.floor(r() * (DISK - 64 * MiB)));
    return Array.from({ length: 5_000 }, () => {
      const base = hot[Math.floor(r() * hot.length)] ?? 0;
      const len = 2 ** (12 + Math.floor(r() * 9));
      return [base + Math.floor((r() * 64 * MiB) / 4096) * 4096, len];
    });
  },
};

const sizes = [64 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 4 * MiB];
const rows: string[] = [];
rows.push(
  `| chunk size | ${Object.keys(workloads).join(" | ")} | index per TiB | objects per TiB |`,
  `|---|${Object.keys(workloads)
    .map(() => "---")
    .join("|")}|---|---|`,
);
for (const size of sizes) {
  const cells: string[] = [];
  for (const [, gen] of Object.entries(workloads)) {
    const writes = gen(rng(42));
    const dirty = new Set<number>();
    const chunks = new Set<number>();
    for (const [off, len] of writes) {
      for (let g = Math.floor(off / GRANULE); g * GRANULE < off + len; g++) dirty.add(g);
      for (let c = Math.floor(off / size); c * size < off + len; c++) chunks.add(c);
    }
    cells.push(((chunks.size * size) / (dirty.size * GRANULE)).toFixed(2));
  }
  const entries = TiB / size;
  rows.push(
    `| ${size / KiB} KiB | ${cells.join(" | ")} | ${((entries * 32) / MiB).toFixed(0)} MiB | ${(entries / 1e6).toFixed(2)} M |`,
  );
}
console.log(rows.join("\n"));
