/**
 * Imported first by the entry points that write backups (agent daemon, `cairn` CLI, bench:backup).
 * libuv's threadpool runs every fs call; a chunk write with O_DIRECT holds its thread until the disk
 * answers, and with the default 4 threads the stat/open/close of the next chunks queued behind those
 * writes. libuv reads the size once, when the pool starts (the first async fs call): hence a module
 * with no imports of its own, imported before anything else. An operator's setting wins.
 */
process.env.UV_THREADPOOL_SIZE ??= "8";
