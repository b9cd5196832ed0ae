import type tls from "node:tls";
import type { onreadFor } from "./openSocket.js";

type Onread = ReturnType<typeof onreadFor>;

/**
 * Gives a TLS socket that wraps an existing connection (NBD's STARTTLS) the `onread` behaviour
 * Node offers only to TLS sockets it connects itself (`onread` is ignored with `socket`): each
 * decrypted record is copied into our buffer and handed to `onread.callback`, instead of a fresh
 * 16 KiB Buffer per record pushed through a Readable stream. Reading 768 MiB that way cost 1.9
 * client CPU-s, a third of it garbage collection (docs/field-notes.md, TLS section).
 *
 * It sets the same internal fields `net.Socket`'s constructor sets for `onread` and calls the
 * handle's `useUserBuffer`, so it depends on Node's internals: when they are not as expected (a
 * Node other than 20's layout) it changes nothing and returns false, and the caller keeps using
 * 'data' events. Call it before any application data can arrive (right after tls.connect).
 */
export function tlsReadInto(socket: tls.TLSSocket, onread: Onread): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  const symbols = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
  const kBuffer = symbols.get("kBuffer");
  const kBufferCb = symbols.get("kBufferCb");
  const kBufferGen = symbols.get("kBufferGen");
  if (!kBuffer || !kBufferCb || !kBufferGen || typeof handle?.useUserBuffer !== "function") return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null && fields[kBuffer] !== undefined) return false;
  const first = onread.buffer();
  fields[kBuffer] = first;
  fields[kBufferGen] = onread.buffer;
  fields[kBufferCb] = onread.callback;
  handle.useUserBuffer(first);
  return true;
}
