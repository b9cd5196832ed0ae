import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Repository root (this file lives in test/lab/support/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** Expensive, reusable artifacts (the built guest): git-ignored, kept between runs. */
export const LAB_CACHE_DIR = process.env.CAIRN_LAB_CACHE ?? join(REPO_ROOT, ".cache", "lab");

/**
 * Where VM disks and guest copies live while tests run. Not under the checkout: QEMU runs as
 * libvirt-qemu and cannot traverse a checkout below a private home directory such as /root.
 */
export const LAB_RUN_ROOT = process.env.CAIRN_LAB_DIR ?? "/var/lib/cairn-lab";

/** Every lab domain's name starts with this, so cleanup never touches anything else. */
export const LAB_DOMAIN_PREFIX = "cairn-lab-";

export const APT_PACKAGES_FILE = join(REPO_ROOT, "scripts", "apt-packages.txt");
