import { execa } from "execa";
import type { Owner } from "./placeConfigFiles.js";

/** A user's and a group's ids on this host (getent), or undefined when either does not exist. */
export async function lookupOwner(user: string, group: string): Promise<Owner | undefined> {
  const id = async (db: "passwd" | "group", name: string) => {
    const r = await execa("getent", [db, name], { reject: false });
    const n = Number.parseInt(String(r.stdout).split(":")[2] ?? "", 10);
    return Number.isInteger(n) ? n : undefined;
  };
  const [uid, gid] = await Promise.all([id("passwd", user), id("group", group)]);
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}
