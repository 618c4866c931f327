/**
 * Runs NBD fuzz cases against a server and judges what came back. Every case: the bytes go out
 * while everything the server says is read, then the client half-closes, and the server must
 * close within a deadline (a hang is a failure). A clean case is also checked against its plan:
 * greeting, every option answered with its own code and the final reply wanted, every request
 * answered exactly once with the right success or a protocol errno, reads covering exactly the
 * range asked, block status within it.
 */
import { CMD, FLAG, type NbdCase, type Plan, REP_ACK, type RequestPlan } from "./fuzz_nbd.ts";

const TWO_32 = 2 ** 32;
/** The errnos a request may fail with; EIO would mean the server failed on a sound device. */
const PROTOCOL_ERRNOS = new Set([1, 12, 22, 28, 75, 95, 108]);
/** More than this from one case is itself a failure: no case asks for that much. */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

/** Sends `c`, returns everything the server sent before it closed; throws on a hang. */
export async function exchange(port: number, c: NbdCase, timeoutMs = 10_000): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`the server neither finished nor closed within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    const received = readToEnd(conn);
    const sent = (async () => {
      try {
        let done = 0;
        while (done < c.bytes.length) done += await conn.write(c.bytes.subarray(done));
        await conn.closeWrite();
      } catch {
        // The server may close before taking everything: that is its right.
      }
    })();
    const [bytes] = await Promise.race([Promise.all([received, sent]), deadline]);
    return bytes;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(256 * 1024);
  while (true) {
    let got: number | null;
    try {
      got = await conn.read(buffer);
    } catch {
      got = null; // a reset after the server closed
    }
    if (got === null) break;
    chunks.push(buffer.slice(0, got));
    total += got;
    if (total > MAX_REPLY_BYTES) throw new Error(`the server sent more than ${MAX_REPLY_BYTES}`);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** A cursor over what the server sent; running past the end is a failure naming `what`. */
class Cursor {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}
  get left(): number {
    return this.bytes.length - this.at;
  }
  take(n: number, what: string): Uint8Array {
    if (n > this.left) throw new Error(`${what}: wanted ${n} bytes, the server sent ${this.left}`);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u16(what: string): number {
    const b = this.take(2, what);
    return (b[0]! << 8) | b[1]!;
  }
  u32(what: string): number {
    const b = this.take(4, what);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }
  u64(what: string): number {
    return this.u32(what) * TWO_32 + this.u32(what);
  }
}

/** Checks every case's greeting; a clean case's whole conversation against its plan. */
export function judge(c: NbdCase, received: Uint8Array, exportSize: number): void {
  const r = new Cursor(received);
  if (received.length === 0) return; // refused or closed before the greeting: allowed
  const greeting = new DataView(r.take(16, "greeting").slice().buffer);
  if (greeting.getUint32(0) !== 0x4e42444d || greeting.getUint32(4) !== 0x41474943) {
    throw new Error("the greeting lacks NBDMAGIC");
  }
  if (greeting.getUint32(8) !== 0x49484156 || greeting.getUint32(12) !== 0x454f5054) {
    throw new Error("the greeting lacks IHAVEOPT");
  }
  r.u16("greeting flags");
  if (c.plan === null) return;
  judgePlan(c.plan, r, exportSize);
}

function judgePlan(plan: Plan, r: Cursor, exportSize: number): void {
  for (const [i, option] of plan.options.entries()) {
    const what = `option #${i} (${option.code})`;
    while (true) {
      const magic = r.u64(what);
      if (magic !== 0x3e889045565a9) throw new Error(`${what}: bad reply magic`);
      const code = r.u32(what);
      if (code !== option.code) throw new Error(`${what}: the reply names option ${code}`);
      const type = r.u32(what);
      r.take(r.u32(what), what);
      if (type === 2 || type === 3 || type === 4) continue; // SERVER, INFO, META_CONTEXT
      if (option.final !== null && type !== option.final) {
        throw new Error(
          `${what}: final reply 0x${type.toString(16)}, wanted 0x${option.final.toString(16)}`,
        );
      }
      if (type !== REP_ACK && (type & 0x80000000) === 0) {
        throw new Error(`${what}: final reply 0x${type.toString(16)} is neither ACK nor error`);
      }
      break;
    }
  }
  if (plan.enter === "export-name") {
    const size = r.u64("EXPORT_NAME reply");
    if (size !== exportSize) throw new Error(`EXPORT_NAME reply says size ${size}`);
    r.take(plan.clientFlags === 3 ? 2 : 126, "EXPORT_NAME reply");
  }
  if (plan.enter === "go" || plan.enter === "export-name") judgeReplies(plan, r);
  if (r.left !== 0) throw new Error(`${r.left} bytes after the last reply the plan expects`);
}

function judgeReplies(plan: Plan, r: Cursor): void {
  const pending = new Map<number, RequestPlan>(plan.requests.map((q) => [q.handle, q]));
  const covered = new Map<number, number>();
  while (pending.size > 0) {
    const magic = r.u32("reply");
    if (magic === 0x67446698) {
      const error = r.u32("simple reply");
      const handle = r.u64("simple reply");
      const q = request(pending, handle);
      if (error === 0 && q.type === CMD.READ) r.take(q.length, `read ${handle} data`);
      if (error !== 0 && plan.mode === "extended") throw new Error("simple reply in extended mode");
      settle(q, error);
      pending.delete(handle);
      continue;
    }
    const extended = magic === 0x6e8a278c;
    if (!extended && magic !== 0x668e33ef) throw new Error(`reply magic 0x${magic.toString(16)}`);
    if (extended !== (plan.mode === "extended")) throw new Error("reply kind does not fit mode");
    const flags = r.u16("chunk");
    const type = r.u16("chunk");
    const handle = r.u64("chunk");
    if (extended) r.u64("chunk offset");
    const length = extended ? r.u64("chunk length") : r.u32("chunk length");
    const payload = new Cursor(r.take(length, "chunk payload"));
    const q = request(pending, handle);
    if (type & 0x8000) {
      if ((flags & 1) === 0) throw new Error(`error chunk for ${handle} without DONE`);
      settle(q, payload.u32("error"));
      pending.delete(handle);
      continue;
    }
    if (type === 1 || type === 2) {
      if (q.type !== CMD.READ) throw new Error(`data chunk for command ${q.type}`);
      const at = payload.u64("chunk offset");
      const size = type === 1 ? payload.left : payload.u32("hole size");
      if (at < q.offset || at + size > q.offset + q.length) {
        throw new Error(`read ${handle} chunk ${at}+${size} outside ${q.offset}+${q.length}`);
      }
      covered.set(handle, (covered.get(handle) ?? 0) + size);
    } else if (type === 5 || type === 6) {
      if (q.type !== CMD.STATUS) throw new Error(`block status chunk for command ${q.type}`);
      payload.u32("context id");
      const count = type === 6 ? payload.u32("count") : payload.left / 8;
      let sum = 0;
      for (let i = 0; i < count; i++) {
        sum += type === 6 ? payload.u64("length") : payload.u32("length");
        if (type === 6) payload.u64("flags");
        else payload.u32("flags");
      }
      if (payload.left !== 0) throw new Error("block status payload has trailing bytes");
      if (sum === 0 || sum > q.length) throw new Error(`block status covers ${sum} of ${q.length}`);
      if ((q.flags & FLAG.REQ_ONE) !== 0 && count !== 1) {
        throw new Error(`REQ_ONE answered with ${count} extents`);
      }
      covered.set(handle, q.length);
    } else if (type !== 0) {
      throw new Error(`unknown chunk type ${type}`);
    }
    if (flags & 1) {
      if (q.type === CMD.READ && covered.get(handle) !== q.length) {
        throw new Error(`read ${handle} covered ${covered.get(handle) ?? 0} of ${q.length}`);
      }
      settle(q, 0);
      pending.delete(handle);
    }
  }
}

function request(pending: Map<number, RequestPlan>, handle: number): RequestPlan {
  const q = pending.get(handle);
  if (q === undefined) throw new Error(`a reply for handle ${handle}, not pending`);
  return q;
}

function settle(q: RequestPlan, error: number): void {
  const what = `command ${q.type} flags 0x${q.flags.toString(16)} ${q.offset}+${q.length}`;
  if (q.ok && error !== 0) throw new Error(`${what} failed with errno ${error}, must succeed`);
  if (!q.ok && error === 0) throw new Error(`${what} succeeded, must fail`);
  if (error !== 0 && !PROTOCOL_ERRNOS.has(error)) throw new Error(`${what}: errno ${error}`);
}

/** A failing case, told so that it can be replayed and read. */
export function describeCase(seed: number, c: NbdCase, error: unknown): string {
  const hex = [...c.bytes.subarray(0, 160)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `fuzz case ${c.index} (seed ${seed}, ${c.plan ? "clean" : "mutated"}): ${
    (error as Error).message
  }\n  pieces: ${c.pieces.map((p) => p.label).join(" | ")}\n  first bytes: ${hex}`;
}
