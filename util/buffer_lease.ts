/**
 * Who may still touch a pooled buffer. A buffer handed down the data path (an NBD request's
 * payload, the buffer a read lands in) belongs to the operation until every part that keeps a
 * view of it past its own call lets go: a request waiting for its node, a link's send queue, a
 * file write in flight. Only then does it go back to its pool. A deadline may fail an operation
 * early; it can never recycle memory a leg is still writing from or reading into.
 *
 * The pool lends a buffer (one holder: its owner); anyone keeping a view holds it and lets go
 * when done; the last one out returns it. A view of a buffer nobody lent is held by nobody: its
 * releases do nothing (its memory is the garbage collector's).
 */

interface Lease {
  holders: number;
  back: () => void;
}

const leases = new WeakMap<ArrayBufferLike, Lease>();

/** Lets go of a hold; calling it more than once does nothing. */
export type Release = () => void;

const NOTHING: Release = () => {};

/**
 * Marks `buffer` lent, with its owner as the one holder, and returns the owner's release; `back`
 * runs when the last holder lets go.
 */
export function lend(buffer: Uint8Array, back: () => void): Release {
  const key = buffer.buffer;
  const lease: Lease = { holders: 1, back };
  leases.set(key, lease);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    letGo(key, lease);
  };
}

/** Keeps the buffer under `view` from its pool until the returned release is called. */
export function hold(view: Uint8Array): Release {
  const key = view.buffer;
  const lease = leases.get(key);
  if (lease === undefined) return NOTHING;
  lease.holders++;
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    letGo(key, lease);
  };
}

/** How many hold the buffer under `view` (0 when it is not lent): for tests and assertions. */
export function holders(view: Uint8Array): number {
  return leases.get(view.buffer)?.holders ?? 0;
}

function letGo(key: ArrayBufferLike, lease: Lease): void {
  if (--lease.holders > 0) return;
  if (leases.get(key) === lease) leases.delete(key);
  lease.back();
}
