"use strict";
/*
 * Starts an ES module entry point with libuv's threadpool sized for backup I/O.
 *
 * Every fs call runs on libuv's threadpool; a chunk write with O_DIRECT holds a thread until the
 * disk answers, and with the default 4 threads the stat/open/close of the next chunks queue behind
 * those writes (a 2 GiB full backup took 6.6-9.7 s with 4 threads, 5.2-7.5 s with 8, same host).
 * libuv reads UV_THREADPOOL_SIZE once, when the pool starts, and Node's ES module loader starts it
 * while it reads the entry's imports: setting it from inside an ES module is too late. A CommonJS
 * entry runs before any of that, so the bins are these small .cjs files. An operator's value wins.
 */
const { pathToFileURL } = require("node:url");

const THREADPOOL_SIZE = "8";

module.exports = function launchWithThreadpool(entry) {
  process.env.UV_THREADPOOL_SIZE ??= THREADPOOL_SIZE;
  import(pathToFileURL(entry).href).catch((err) => {
    process.stderr.write(`${err?.stack ?? String(err)}\n`);
    process.exit(1);
  });
};
