/**
 * Seeded NBD fuzz cases: a handshake with options in odd orders (structured replies, extended
 * headers and metadata contexts before or after one another, unknown options, bad data), then
 * requests with odd commands, flags, offsets and lengths. A clean case keeps the framing and
 * carries a plan of what the server must answer; a mutated case garbles fields, lengths and
 * order and is only required to be survived. Writes stay below `fence`, so a verifying client
 * above it on the same export is never disturbed by a clean case or a handshake mutation.
 */
import { FuzzGen } from "./fuzz_gen.ts";
import { requestHeader } from "./nbd_raw_client.ts";

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED: 8,
  LIST_META: 9,
  SET_META: 10,
  EXTENDED: 11,
} as const;
export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  ZEROES: 6,
  STATUS: 7,
} as const;
export const FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16, PAYLOAD_LEN: 32 };
export const REP_ACK = 1;
export const ERR_UNSUP = 0x80000001;
export const ERR_INVALID = 0x80000003;
export const ERR_UNKNOWN = 0x80000006;

/** The export being fuzzed. */
export interface FuzzTarget {
  readonly size: number;
  /** Clean writes (and handshake-only mutations) never touch bytes at or past this. */
  readonly fence: number;
  readonly maxBlock: number;
  /** Names that reach the fuzzed export ("" always does). */
  readonly names: readonly string[];
}

export type Mode = "simple" | "structured" | "extended";

export interface OptionPlan {
  readonly code: number;
  /** The final reply type wanted, or null when any final reply will do. */
  readonly final: number | null;
}

export interface RequestPlan {
  readonly handle: number;
  readonly type: number;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  /** Whether the server must succeed. */
  readonly ok: boolean;
}

export interface Plan {
  readonly clientFlags: number;
  readonly options: OptionPlan[];
  /** How transmission starts; "closed" means the server must close without more replies. */
  readonly enter: "go" | "export-name" | "abort" | "closed" | "eof";
  readonly mode: Mode;
  readonly blockStatus: boolean;
  readonly requests: RequestPlan[];
  readonly disc: boolean;
}

export interface Piece {
  readonly phase: "handshake" | "transmission";
  readonly label: string;
  bytes: Uint8Array;
}

export interface NbdCase {
  readonly index: number;
  readonly pieces: readonly Piece[];
  readonly bytes: Uint8Array;
  /** What the server must answer; null for a mutated case. */
  readonly plan: Plan | null;
}

const enc = new TextEncoder();
const TWO_32 = 2 ** 32;

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function option(code: number, data: Uint8Array): Uint8Array {
  return cat(u32(0x49484156), u32(0x454f5054), u32(code), u32(data.length), data);
}

function nameData(name: string, infos: number[]): Uint8Array {
  const n = enc.encode(name);
  const out = new Uint8Array(4 + n.length + 2 + 2 * infos.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, n.length);
  out.set(n, 4);
  v.setUint16(4 + n.length, infos.length);
  infos.forEach((info, i) => v.setUint16(6 + n.length + 2 * i, info));
  return out;
}

function metaData(name: string, queries: string[]): Uint8Array {
  const parts = [u32(enc.encode(name).length), enc.encode(name), u32(queries.length)];
  for (const q of queries) parts.push(u32(enc.encode(q).length), enc.encode(q));
  return cat(...parts);
}

function request(
  mode: Mode,
  flags: number,
  type: number,
  handle: number,
  offset: number,
  length: number,
): Uint8Array {
  return requestHeader(mode === "extended", flags, type, handle, offset, length);
}

/** Builds case `index`: clean (with a plan) or mutated within `scope`. */
export function nbdCase(
  seed: number,
  index: number,
  target: FuzzTarget,
  scope: "any" | "handshake",
): NbdCase {
  const g = new FuzzGen(seed);
  const { pieces, plan } = cleanCase(g, target);
  if (g.chance(0.4)) return finish(index, pieces, plan);
  mutate(g, pieces, scope);
  return finish(index, pieces, null);
}

function finish(index: number, pieces: Piece[], plan: Plan | null): NbdCase {
  return { index, pieces, bytes: cat(...pieces.map((p) => p.bytes)), plan };
}

function cleanCase(g: FuzzGen, target: FuzzTarget): { pieces: Piece[]; plan: Plan } {
  const pieces: Piece[] = [];
  const hs = (label: string, bytes: Uint8Array) =>
    pieces.push({ phase: "handshake", label, bytes });
  const clientFlags = g.chance(0.8) ? 3 : 1;
  hs("client flags", u32(clientFlags));
  const options: OptionPlan[] = [];
  let mode: Mode = "simple";
  let blockStatus = false;
  const goodName = () => g.pick(["", ...target.names]);
  const badName = () => {
    const name = g.chance(0.5) ? `no-such-${g.below(1000)}` : g.text(6);
    return name === "" || target.names.includes(name) ? "no-such" : name;
  };
  for (let n = g.below(6); n > 0; n--) {
    const kind = g.pick(
      [
        "list",
        "info",
        "structured",
        "extended",
        "list-meta",
        "set-meta",
        "starttls",
        "unknown",
      ] as const,
    );
    switch (kind) {
      case "list": {
        const junk = g.chance(0.2);
        hs("LIST", option(OPT.LIST, junk ? g.bytes(g.between(1, 8)) : new Uint8Array(0)));
        options.push({ code: OPT.LIST, final: junk ? ERR_INVALID : REP_ACK });
        break;
      }
      case "info": {
        const which = g.pick(["good", "unknown", "malformed"] as const);
        const infos = Array.from({ length: g.below(4) }, () => g.below(5));
        const data = which === "good"
          ? nameData(goodName(), infos)
          : which === "unknown"
          ? nameData(`no-such-${g.below(1000)}`, infos)
          : g.bytes(g.below(6));
        hs("INFO", option(OPT.INFO, data));
        options.push({
          code: OPT.INFO,
          final: which === "good" ? REP_ACK : which === "unknown" ? ERR_UNKNOWN : ERR_INVALID,
        });
        break;
      }
      case "structured":
      case "extended": {
        const code = kind === "structured" ? OPT.STRUCTURED : OPT.EXTENDED;
        const junk = g.chance(0.15);
        hs(kind, option(code, junk ? g.bytes(g.between(1, 4)) : new Uint8Array(0)));
        const fresh = kind === "structured" ? mode === "simple" : mode !== "extended";
        options.push({ code, final: !junk && fresh ? REP_ACK : ERR_INVALID });
        if (!junk && fresh) mode = kind;
        break;
      }
      case "list-meta":
      case "set-meta": {
        const set = kind === "set-meta";
        const code = set ? OPT.SET_META : OPT.LIST_META;
        const known = g.chance(0.8);
        const queries = Array.from(
          { length: g.below(3) },
          () => g.pick(["base:allocation", "base:", "qemu:dirty-bitmap:x", g.text(3)]),
        );
        hs(kind, option(code, metaData(known ? goodName() : badName(), queries)));
        if (set) blockStatus = false;
        const final = mode === "simple" || queries.some((q) => q.includes("\0"))
          ? ERR_INVALID
          : known
          ? REP_ACK
          : null;
        options.push({ code, final });
        if (set && final === REP_ACK && queries.includes("base:allocation")) blockStatus = true;
        break;
      }
      case "starttls":
        hs("STARTTLS", option(OPT.STARTTLS, new Uint8Array(0)));
        options.push({ code: OPT.STARTTLS, final: ERR_UNSUP });
        break;
      case "unknown": {
        const code = g.pick([0, 4, 12, 13, 99, 0x7fffffff, 0xffffffff, g.u32()]);
        if (code >= 1 && code <= 11 && code !== 4) break; // only codes the server does not know
        hs("unknown option", option(code, g.bytes(g.below(12))));
        options.push({ code, final: ERR_UNSUP });
        break;
      }
    }
  }
  if (mode !== "simple" && g.chance(0.5)) {
    // Often enough to reach BLOCK_STATUS: base:allocation selected after the reply mode.
    hs("set-meta", option(OPT.SET_META, metaData(goodName(), ["base:allocation"])));
    options.push({ code: OPT.SET_META, final: REP_ACK });
    blockStatus = true;
  }
  const endWith = g.pick(
    [
      "go",
      "go",
      "go",
      "go",
      "export-name",
      "export-name",
      "abort",
      "bad-export-name",
      "eof",
    ] as const,
  );
  let enter: Plan["enter"];
  if (endWith === "go") {
    hs("GO", option(OPT.GO, nameData(goodName(), [g.below(4)])));
    options.push({ code: OPT.GO, final: REP_ACK });
    enter = "go";
  } else if (endWith === "export-name") {
    hs("EXPORT_NAME", option(OPT.EXPORT_NAME, enc.encode(goodName())));
    enter = "export-name";
  } else if (endWith === "abort") {
    hs("ABORT", option(OPT.ABORT, new Uint8Array(0)));
    options.push({ code: OPT.ABORT, final: REP_ACK });
    enter = "abort";
  } else if (endWith === "bad-export-name") {
    hs("EXPORT_NAME (unknown)", option(OPT.EXPORT_NAME, enc.encode(badName())));
    enter = "closed";
  } else {
    enter = "eof";
  }
  const requests: RequestPlan[] = [];
  let disc = false;
  if (enter === "go" || enter === "export-name") {
    const count = g.between(1, 10);
    for (let i = 0; i < count; i++) {
      const r = requestPlan(g, target, mode, blockStatus, i + 1);
      requests.push(r.plan);
      pieces.push({ phase: "transmission", label: r.label, bytes: r.bytes });
    }
    if (g.chance(0.3)) {
      disc = true;
      pieces.push({
        phase: "transmission",
        label: "DISC",
        bytes: request(mode, 0, CMD.DISC, 999, 0, 0),
      });
    }
  }
  return {
    pieces,
    plan: { clientFlags, options, enter, mode, blockStatus, requests, disc },
  };
}

const WRITE_LIKE = new Set<number>([CMD.WRITE, CMD.TRIM, CMD.ZEROES]);

function requestPlan(
  g: FuzzGen,
  target: FuzzTarget,
  mode: Mode,
  blockStatus: boolean,
  index: number,
): { plan: RequestPlan; label: string; bytes: Uint8Array } {
  const type = g.pick([
    CMD.READ,
    CMD.READ,
    CMD.WRITE,
    CMD.WRITE,
    CMD.FLUSH,
    CMD.TRIM,
    CMD.CACHE,
    CMD.ZEROES,
    CMD.STATUS,
    8,
    9,
    200,
    0xffff,
  ]);
  let flags = g.chance(0.55) ? 0 : g.below(64);
  if (g.chance(0.05)) flags = g.below(0x10000);
  const writes = WRITE_LIKE.has(type);
  const limit = writes ? target.fence : target.size;
  let offset: number;
  let length: number;
  if (type === CMD.FLUSH && g.chance(0.8)) {
    offset = 0;
    length = 0;
  } else if (g.chance(0.7)) {
    length = Math.min(
      limit,
      g.pick([1, 512, 4096, g.between(1, 65536), g.between(1, 1024 * 1024)]),
    );
    offset = g.chance(0.3) ? limit - length : g.between(0, limit - length);
  } else {
    // Out of range, at the edge or far past it, or of length 0.
    length = g.pick([0, 1, 4096, g.between(1, 65536)]);
    offset = g.pick([
      target.size,
      target.size + 1,
      target.size - 1 + (length === 0 ? 2 : 0),
      TWO_32,
      2 ** 52,
    ]);
    if (offset < target.size && offset + length <= target.size) offset = target.size;
    if (!writes && mode === "extended" && g.chance(0.3)) length = 2 ** 40 + g.below(1000);
  }
  const extended = mode === "extended";
  // A payload on a command other than WRITE needs extended headers and PAYLOAD_LEN.
  let payload = type === CMD.WRITE ? length : 0;
  if (type !== CMD.WRITE && extended && (flags & FLAG.PAYLOAD_LEN) !== 0) {
    if (length > 65536) flags &= ~FLAG.PAYLOAD_LEN;
    else payload = length;
  }
  if (type === CMD.WRITE && length > 1024 * 1024) length = payload = 4096;
  const handle = index + g.below(1 << 20) * TWO_32;
  const ok = expectOk(type, flags, offset, length, target, mode, blockStatus);
  const header = request(mode, flags, type, handle, offset, length);
  const bytes = payload > 0 ? cat(header, g.bytes(payload)) : header;
  return {
    plan: { handle, type, flags, offset, length, ok },
    label: `cmd ${type} flags 0x${flags.toString(16)} ${offset}+${length}`,
    bytes,
  };
}

/** The server's rules, written again independently: whether a request must succeed. */
function expectOk(
  type: number,
  flags: number,
  offset: number,
  length: number,
  target: FuzzTarget,
  mode: Mode,
  blockStatus: boolean,
): boolean {
  let allowed = FLAG.FUA;
  if (type === CMD.READ && mode !== "simple") allowed |= FLAG.DF;
  if (type === CMD.WRITE && mode === "extended") allowed |= FLAG.PAYLOAD_LEN;
  if (type === CMD.ZEROES) allowed |= FLAG.NO_HOLE | FLAG.FAST_ZERO;
  if (type === CMD.STATUS) allowed |= FLAG.REQ_ONE;
  if (type > CMD.STATUS || type === CMD.DISC || (flags & ~allowed) !== 0) return false;
  if (type === CMD.FLUSH) return offset === 0 && length === 0;
  if (type === CMD.STATUS && !blockStatus) return false;
  if (length === 0 || offset + length > target.size) return false;
  const capped = type === CMD.READ || type === CMD.WRITE || type === CMD.CACHE ||
    (type === CMD.ZEROES && (flags & FLAG.FAST_ZERO) === 0);
  return !(capped && length > target.maxBlock);
}

/** Garbles 1 to 3 things in `pieces` (only handshake pieces when `scope` says so). */
function mutate(g: FuzzGen, pieces: Piece[], scope: "any" | "handshake"): void {
  const eligible = () =>
    pieces.map((p, i) => [p, i] as const).filter(([p]) =>
      scope === "any" || p.phase === "handshake"
    );
  for (let n = g.between(1, 3); n > 0; n--) {
    const choices = eligible();
    if (choices.length === 0) break;
    const [piece, at] = g.pick(choices);
    const kind = g.pick(["byte", "word", "drop", "duplicate", "insert", "swap", "length"]);
    if (kind === "byte" && piece.bytes.length > 0) {
      piece.bytes = piece.bytes.slice();
      piece.bytes[g.below(piece.bytes.length)] = g.below(256);
    } else if (kind === "word" && piece.bytes.length >= 4) {
      piece.bytes = piece.bytes.slice();
      const word = g.below(piece.bytes.length - 3);
      new DataView(piece.bytes.buffer).setUint32(word, g.u32());
    } else if (kind === "length" && piece.bytes.length >= 16) {
      // Option length at 12, request length at 24 (compact) or 28 (extended low word).
      piece.bytes = piece.bytes.slice();
      const field = piece.phase === "handshake" ? 12 : Math.min(24, piece.bytes.length - 4);
      new DataView(piece.bytes.buffer).setUint32(field, g.u32());
    } else if (kind === "drop") {
      pieces.splice(at, 1);
    } else if (kind === "duplicate") {
      pieces.splice(at, 0, { ...piece, bytes: piece.bytes.slice() });
    } else if (kind === "insert") {
      pieces.splice(at, 0, { phase: piece.phase, label: "junk", bytes: g.bytes(g.between(1, 40)) });
    } else if (kind === "swap" && at + 1 < pieces.length) {
      const next = pieces[at + 1]!;
      if (scope === "any" || next.phase === "handshake") {
        pieces[at] = next;
        pieces[at + 1] = piece;
      }
    }
  }
  if (g.chance(0.3) && pieces.length > 0) {
    // Cut the stream short: the server must treat it as a client that vanished.
    const last = pieces.length - 1 - g.below(Math.min(3, pieces.length));
    const piece = pieces[last]!;
    piece.bytes = piece.bytes.subarray(0, g.below(piece.bytes.length + 1));
    pieces.length = last + 1;
  }
}
