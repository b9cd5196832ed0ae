#!/usr/bin/env node
"use strict";
// The agent daemon (dist/agent/src/main.js), started with its threadpool size: see launchWithThreadpool.
require("../../shared/bin/launchWithThreadpool.cjs")(
  require("node:path").join(__dirname, "../../dist/agent/src/main.js"),
);
