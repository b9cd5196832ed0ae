/** Cairn's release version, reported by agents and the coordinator. */
export const CAIRN_VERSION = "0.1.0";
