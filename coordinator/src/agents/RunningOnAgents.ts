/**
 * What each agent said it runs in its last heartbeat, and when. An interrupted job is taken up
 * only after its agent has reported since the interruption: still in the list, re-attaching to it
 * is the same run; missing, the run was lost (agent died or restarted) and running it again is a
 * new attempt. In memory only: after a coordinator restart every agent reports again within a
 * heartbeat, and interrupted jobs wait for that.
 */
export class RunningOnAgents {
  private readonly reports = new Map<string, { atMs: number; jobIds: ReadonlySet<string> }>();

  report(hostId: string, atMs: number, jobIds: readonly string[]): void {
    this.reports.set(hostId, { atMs, jobIds: new Set(jobIds) });
  }

  /** The jobs the host reported running in a heartbeat later than `afterMs`; undefined if none came since. */
  since(hostId: string, afterMs: number): ReadonlySet<string> | undefined {
    const r = this.reports.get(hostId);
    return r && r.atMs > afterMs ? r.jobIds : undefined;
  }
}
