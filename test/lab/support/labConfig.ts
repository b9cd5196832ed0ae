import type { GuestImage } from "./guest/buildGuest.js";

/** What the lab's global setup hands to test files (through vitest's provide/inject). */
export interface LabConfig {
  guest: GuestImage;
  runRoot: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    cairnLab: LabConfig;
  }
}
