import { JobFeed } from "./JobFeed.js";
import type { JobRegistry } from "./JobRegistry.js";

/**
 * The streaming side of agent jobs: one feed per running job id, so a caller that comes back (the
 * coordinator after a restart or a broken stream) attaches to the job instead of starting it twice,
 * and the final events of recently finished jobs, so a late caller gets the recorded outcome.
 */
export class JobStreams<T> {
  private readonly feeds = new Map<string, JobFeed<T>>();
  private readonly finished = new Map<string, T>();

  constructor(
    private readonly jobs: JobRegistry,
    private readonly keepFinished = 256,
  ) {}

  /**
   * A caller that comes back: the recorded final event of a job that finished here, or the running
   * job's events (the returning caller never aborts it). Returns false when this id is new here.
   */
  async *replayOrAttach(jobId: string, signal: AbortSignal): AsyncGenerator<T, boolean> {
    const recorded = this.finished.get(jobId);
    if (recorded) {
      yield recorded;
      return true;
    }
    const running = this.feeds.get(jobId);
    if (!running) return false;
    yield* this.follow(running, jobId, { signal, starter: false, detach: true });
    return true;
  }

  /**
   * Starts a job in the registry (at most one per `key`) and returns its feed; `final` turns its
   * result into the last event. The feed outlives every caller until the job ends.
   */
  start<R>(
    jobId: string,
    key: string,
    run: (signal: AbortSignal, feed: JobFeed<T>) => Promise<R>,
    final: (r: R) => T,
  ): { feed: JobFeed<T>; done: Promise<R> } {
    const feed = new JobFeed<T>();
    const done = this.jobs.start(jobId, key, (signal) => run(signal, feed));
    this.feeds.set(jobId, feed);
    void done
      .then(
        (r) => {
          const ev = final(r);
          this.remember(jobId, ev);
          feed.finish(ev);
        },
        (e) => feed.fail(e),
      )
      .finally(() => this.feeds.delete(jobId));
    return { feed, done };
  }

  /**
   * Streams a job's events to one caller. When the caller goes away the job is aborted if this
   * caller started it and did not ask to detach (the coordinator detaches: it re-attaches by id).
   */
  async *follow(
    feed: JobFeed<T>,
    jobId: string,
    opts: { signal: AbortSignal; starter: boolean; detach: boolean },
  ): AsyncGenerator<T> {
    const q = feed.subscribe();
    const onCancel = () => {
      if (opts.starter && !opts.detach) this.jobs.abort(jobId, "the caller cancelled the RPC");
      q.end();
    };
    opts.signal.addEventListener("abort", onCancel, { once: true });
    try {
      yield* q;
    } finally {
      opts.signal.removeEventListener("abort", onCancel);
      feed.unsubscribe(q);
    }
  }

  private remember(jobId: string, ev: T): void {
    if (this.keepFinished === 0) return;
    this.finished.set(jobId, ev);
    // Oldest first (insertion order): a bounded memory, not a history.
    for (const k of this.finished.keys()) {
      if (this.finished.size <= this.keepFinished) break;
      this.finished.delete(k);
    }
  }
}

const STREAMS = new WeakMap<JobRegistry, Map<string, JobStreams<unknown>>>();

/**
 * The streams of one kind of job (one RPC's events) over a registry: one per registry and kind.
 * `keepFinished` final events are remembered; 0 for a kind whose outcome is found elsewhere.
 */
export function jobStreamsOf<T>(jobs: JobRegistry, kind: string, keepFinished = 256): JobStreams<T> {
  let byKind = STREAMS.get(jobs);
  if (!byKind) {
    byKind = new Map();
    STREAMS.set(jobs, byKind);
  }
  let s = byKind.get(kind);
  if (!s) {
    s = new JobStreams<unknown>(jobs, keepFinished);
    byKind.set(kind, s);
  }
  return s as JobStreams<T>;
}
