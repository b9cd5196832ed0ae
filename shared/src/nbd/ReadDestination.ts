/**
 * Where one READ's payload lands: a single buffer, or several laid end to end (a scatter read, so
 * that one large request can fill several chunk-sized buffers: fewer requests, each one a wake-up
 * of the server and a reply to parse).
 */
export class ReadDestination {
  readonly length: number;
  /** Start of each part within the payload. */
  private readonly starts: number[];

  constructor(private readonly parts: readonly Buffer[]) {
    let at = 0;
    this.starts = parts.map((p) => {
      const s = at;
      at += p.length;
      return s;
    });
    this.length = at;
  }

  private part(at: number): number {
    let i = this.parts.length - 1;
    while (i > 0 && this.starts[i]! > at) i--;
    return i;
  }

  /** A view of [at, at + max) that stops at the end of the part holding `at`. */
  view(at: number, max: number): Buffer {
    const i = this.part(at);
    const from = at - this.starts[i]!;
    const p = this.parts[i]!;
    return p.subarray(from, Math.min(p.length, from + max));
  }

  /** Copies `data` in at payload offset `at`, across parts. */
  copyIn(data: Buffer, at: number): void {
    let done = 0;
    while (done < data.length) {
      const v = this.view(at + done, data.length - done);
      data.copy(v, 0, done, done + v.length);
      done += v.length;
    }
  }

  /** Zeroes [at, at + length), across parts. */
  zero(at: number, length: number): void {
    let done = 0;
    while (done < length) {
      const v = this.view(at + done, length - done);
      v.fill(0);
      done += v.length;
    }
  }
}
