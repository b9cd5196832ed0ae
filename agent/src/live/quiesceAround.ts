import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { Consistency } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../backup/BackupRequest.js";
import { type FreezePhases, withFrozenGuest } from "../guest/withFrozenGuest.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";

export interface QuiesceResult {
  consistency: Consistency;
  freezeWindowMs: number | undefined;
  /** freeze call / begin while frozen / thaw call, ms (undefined when not frozen). */
  freezePhasesMs: FreezePhases | undefined;
}

/** The two steps around the freeze; `beforeFreeze` runs only when the guest will be frozen. */
export interface QuiesceSteps {
  /** Work that must precede the point in time but need not be frozen (the new checkpoint). */
  beforeFreeze: () => Promise<void>;
  /** Starts the point-in-time export. */
  begin: () => Promise<void>;
  /** A guest-ping already under way (started with planning); otherwise the guest is pinged here. */
  guestAnswers?: Promise<boolean> | undefined;
}

/**
 * Runs `begin` (which starts the point-in-time export) with the guest quiesced when the policy and
 * the guest allow it: pre-freeze hook → beforeFreeze → freeze → begin → thaw → post-thaw hook.
 * Without a usable guest agent the backup is crash-consistent with the reason, unless quiesce is
 * required, and `beforeFreeze` is skipped (begin then does everything atomically).
 */
export async function quiesceAround(
  deps: Pick<BackupDeps, "guestAgent" | "freezeMarkers" | "log">,
  config: BackupConfig,
  req: BackupRequest,
  domain: DomainInfo,
  { beforeFreeze, begin, guestAnswers }: QuiesceSteps,
): Promise<QuiesceResult> {
  const crash = async (reason: string) => {
    if (req.quiesce === "required") {
      throw new CairnError("failed-precondition", `cannot quiesce ${domain.name}: ${reason}`, {
        hint: "start qemu-guest-agent in the guest, or set quiesce to preferred/off",
      });
    }
    deps.log.warn({ domain: domain.name, reason }, "crash-consistent backup");
    await begin();
    return {
      consistency: { kind: "crash-consistent", reason } as Consistency,
      freezeWindowMs: undefined,
      freezePhasesMs: undefined,
    };
  };
  if (req.quiesce === "off") return crash("quiesce is off by policy");
  if (!domain.hasGuestAgentChannel) return crash("the domain has no guest agent channel");
  const opts = { signal: req.signal, timeoutMs: config.guestPingTimeoutMs };
  if (!(await (guestAnswers ?? deps.guestAgent.ping(domain.name, opts))))
    return crash("the guest agent did not answer");

  const runHook = async (name: string, argv: readonly string[] | undefined) => {
    if (!argv?.length) return;
    const r = await deps.guestAgent.exec(domain.name, argv, {
      signal: req.signal,
      timeoutMs: config.hookTimeoutMs,
    });
    if (r.exitCode !== 0) {
      throw new CairnError(
        "failed-precondition",
        `${name} hook ${argv.join(" ")} failed in ${domain.name} (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`,
        {
          hint: "fix the hook inside the guest; the guest was not frozen",
        },
      );
    }
  };
  await runHook("pre-freeze", req.hooks?.preFreeze);
  const frozen = await withFrozenGuest(
    deps.guestAgent,
    deps.freezeMarkers,
    deps.log,
    {
      domain: domain.name,
      freezeTimeoutMs: config.freezeTimeoutMs,
      thawTimeoutMs: config.thawTimeoutMs,
      maxFrozenMs: config.maxFrozenMs,
      signal: req.signal,
    },
    begin,
    beforeFreeze,
  );
  await runHook("post-thaw", req.hooks?.postThaw);
  if (frozen.watchdogFired) {
    return {
      consistency: {
        kind: "crash-consistent",
        reason: `the freeze watchdog thawed the guest after ${config.maxFrozenMs} ms, before the export started`,
      },
      freezeWindowMs: frozen.freezeWindowMs,
      freezePhasesMs: frozen.phasesMs,
    };
  }
  return {
    consistency: { kind: "quiesced", freezeMs: frozen.freezeWindowMs },
    freezeWindowMs: frozen.freezeWindowMs,
    freezePhasesMs: frozen.phasesMs,
  };
}
