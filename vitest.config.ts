import { defineConfig } from "vitest/config";

// Three tiers, all run by `npm test` (and so by the README's test command):
//  unit        pure logic, in-memory fakes; fast and parallel
//  integration real helper processes (qemu-nbd, nbdkit, Swift, ...), no VMs
//  lab         real libvirt + QEMU (TCG) VMs with a real qemu-guest-agent; serial
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "lab",
          include: ["test/lab/**/*.test.ts"],
          globalSetup: ["test/lab/globalSetup.ts"],
          // VMs under TCG share two cores: one file at a time keeps timings honest.
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
