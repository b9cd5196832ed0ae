import type { Extent } from "../../../../shared/src/nbd/extents/Extent.js";
import { mergeExtents } from "../../../../shared/src/nbd/extents/mergeExtents.js";
import { run } from "./processes.js";

/** `nbdinfo --map=CONTEXT --json URI`, as merged extents: the reference our maps must equal. */
export async function nbdinfoMap(uri: string, context: string): Promise<Extent[]> {
  const out = await run("nbdinfo", [`--map=${context}`, "--json", uri]);
  const rows = JSON.parse(out) as { offset: number; length: number; type: number }[];
  return mergeExtents(rows.map((r) => ({ offset: r.offset, length: r.length, flags: r.type })));
}

export function unixUri(socket: string, exportName = ""): string {
  return `nbd+unix:///${exportName}?socket=${socket}`;
}
