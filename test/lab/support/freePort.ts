import { createServer } from "node:net";
import { LabError } from "./run.js";

/** The first port of [min, max] nothing listens on at 127.0.0.1 (a migration's incoming port). */
export async function freePort([min, max]: readonly [number, number]): Promise<number> {
  for (let p = min; p <= max; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new LabError(`no free port in ${min}-${max}`);
}
