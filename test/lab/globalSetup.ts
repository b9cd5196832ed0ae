import type { TestProject } from "vitest/node";
import "./support/labConfig.js";
import { prepareLab } from "./support/prepareLab.js";

/** Lab tier setup: packages, libvirt, the cached guest; teardown stops exactly what it started. */
export default async function setup(project: TestProject) {
  const lab = await prepareLab();
  project.provide("cairnLab", lab.config);
  console.log(`[lab] ${lab.summary}`);
  return () => lab.teardown();
}
