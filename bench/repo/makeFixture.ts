import { randomBytes } from "node:crypto";
import { open, rename, stat } from "node:fs/promises";

const MiB = 1024 * 1024;

/** Deterministic PRNG (mulberry32): the fixture is the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const WORDS =
  "the of and to in is was for on that with as by at from his her this which or an be are not had have it were but all one their they been has its who more when will would there can into no if out so said what up its about than other some could them time these two may then do first any new very my like our over such man even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three".split(
    " ",
  );

function textBlock(r: () => number, size: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const w = WORDS[Math.floor(r() * WORDS.length)]!;
    const sep = r() < 0.08 ? ".\n" : " ";
    parts.push(w, sep);
    n += w.length + sep.length;
  }
  return Buffer.from(parts.join("")).subarray(0, size);
}

/**
 * A VM-like raw disk: per 1 MiB region, ~30 % holes (never written: sparse), ~35 % random
 * (incompressible: media, encrypted files), ~35 % English-like text (compressible: logs, configs).
 * Reused if it already exists with the right size.
 */
export async function makeVmLikeFixture(path: string, size: number): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (st?.size === size) return;
  const r = rng(20261122);
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await fh.truncate(size);
    for (let off = 0; off < size; off += MiB) {
      const x = r();
      if (x < 0.3) continue;
      const data = x < 0.65 ? randomBytes(MiB) : textBlock(r, MiB);
      await fh.write(data, 0, data.length, off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
