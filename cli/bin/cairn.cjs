#!/usr/bin/env node
"use strict";
// The cairn CLI (dist/cli/src/main.js), started with its threadpool size: see launchWithThreadpool.
require("../../shared/bin/launchWithThreadpool.cjs")(
  require("node:path").join(__dirname, "../../dist/cli/src/main.js"),
);
