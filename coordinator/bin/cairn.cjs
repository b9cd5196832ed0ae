#!/usr/bin/env node
"use strict";
// The cairn CLI (dist/coordinator/src/cli/main.js), started with its threadpool size: see launchWithThreadpool.
require("../../shared/bin/launchWithThreadpool.cjs")(
  require("node:path").join(__dirname, "../../dist/coordinator/src/cli/main.js"),
);
