import { execa, type ResultPromise } from "execa";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";
import { virshFailure } from "./virshFailure.js";

let markerSeq = 0;

const SPAWN_OPTIONS = {
  stdin: "pipe",
  stdout: "pipe",
  stderr: "pipe",
  buffer: false,
  reject: false,
  env: { LC_ALL: "C" },
} as const;

/**
 * One long-running `virsh` reading commands from stdin: a command costs a round trip to libvirtd
 * instead of a process start and a new connection (~40 ms here). That matters where the guest is
 * frozen: freeze → backup-begin → thaw. Commands run one at a time. Each is followed by two markers:
 * `echo` on stdout and a deliberately failing `domstate` on stderr, so its output and its errors are
 * both delimited. A timeout or abort kills the process; the next command starts a new one.
 */
export class VirshSession {
  private child: ResultPromise<typeof SPAWN_OPTIONS> | undefined;
  private out = "";
  private err = "";
  private wake: (() => void) | undefined;
  private busy = false;
  private dead: CairnError | undefined;
  lastUsed = Date.now();

  constructor(
    private readonly uri: string,
    /** The virsh executable (tests substitute one that speaks the same stdin protocol). */
    private readonly binary = "virsh",
  ) {}

  get idle(): boolean {
    return !this.busy;
  }

  private spawn() {
    const child = execa(this.binary, ["-q", "-c", this.uri], SPAWN_OPTIONS);
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    // Output a killed process still had in its pipes is not the new process's.
    child.stdout.on("data", (s: string) => {
      if (this.child !== child) return;
      this.out += s;
      this.wake?.();
    });
    child.stderr.on("data", (s: string) => {
      if (this.child !== child) return;
      this.err += s;
      this.wake?.();
    });
    this.dead = undefined;
    void child.then((r) => {
      // A process kill() replaced: its late exit must not mark the new one dead.
      if (this.child !== child) return;
      this.dead = new CairnError(
        "unavailable",
        `virsh session to ${this.uri} exited (${r.exitCode ?? r.signal})`,
      );
      this.child = undefined;
      this.wake?.();
    });
    this.child = child;
    this.out = "";
    this.err = "";
    return child;
  }

  async run(args: readonly string[], opts: { signal: AbortSignal; timeoutMs: number }): Promise<string> {
    if (this.busy) throw new CairnError("internal", "VirshSession.run called while busy");
    if (opts.signal.aborted) throw abortError(opts.signal, `virsh ${args[0]}`);
    this.busy = true;
    try {
      const child = this.child ?? this.spawn();
      const n = ++markerSeq;
      const outMark = `__cairn_out_${process.pid}_${n}__`;
      const errMark = `__cairn_err_${process.pid}_${n}__`;
      child.stdin.write(`${args.map(quote).join(" ")}\necho ${outMark}\ndomstate ${errMark}\n`);
      const deadline = Date.now() + opts.timeoutMs;
      for (;;) {
        // The marker also appears in virsh's echo of the command line ("virsh # echo MARK"): skip that one.
        const oi = this.out.search(new RegExp(`(?<!echo )${outMark}`));
        const ei = this.err.indexOf(`'${errMark}'`);
        if (oi >= 0 && ei >= 0) {
          const stdout = stripPrompts(this.out.slice(0, oi));
          const errLines = this.err.slice(0, this.err.lastIndexOf("\n", ei) + 1).trim();
          this.out = this.out.slice(oi + outMark.length);
          this.err = this.err.slice(this.err.indexOf("\n", ei) + 1);
          if (errLines) throw virshFailure(args, errLines, this.uri);
          return stdout.trim();
        }
        if (this.dead) throw this.dead;
        if (opts.signal.aborted || Date.now() >= deadline) {
          this.kill();
          if (opts.signal.aborted) throw abortError(opts.signal, `virsh ${args[0]}`);
          throw new CairnError("timeout", `virsh ${args[0]} did not finish within ${opts.timeoutMs} ms`, {
            hint: "check that libvirtd is responsive (virsh version)",
          });
        }
        // Output, abort or a 100 ms tick, whichever comes first; each way leaves no listener on the
        // caller's signal, which lives as long as a backup job and serves every call it makes.
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            opts.signal.removeEventListener("abort", done);
            this.wake = undefined;
            resolve();
          };
          const t = setTimeout(done, Math.min(100, Math.max(1, deadline - Date.now())));
          opts.signal.addEventListener("abort", done, { once: true });
          this.wake = done;
        });
      }
    } finally {
      this.busy = false;
      this.lastUsed = Date.now();
    }
  }

  kill(): void {
    this.child?.kill("SIGKILL");
    this.child = undefined;
    this.out = "";
    this.err = "";
  }
}

/** virsh's own command syntax (not a shell): single-quoted words; refuse what cannot be quoted. */
function quote(arg: string): string {
  if (/['\n\r]/.test(arg)) {
    throw new CairnError(
      "invalid-argument",
      `argument ${JSON.stringify(arg)} cannot be passed to a virsh session`,
    );
  }
  return `'${arg}'`;
}

/** Removes the echoed prompt lines ("virsh # <command>") that virsh prints when stdin is not a terminal. */
function stripPrompts(s: string): string {
  return s.replace(/virsh # [^\n]*\n?/g, "");
}
