/**
 * A seeded generator of hostile input for the node wire protocol: what a peer may send before it
 * authenticated (garbage, huge lengths, cut frames, broken msgpack, hellos with wrong types,
 * block operations instead of a proof) and after (the same, plus requests with wrong field types
 * and hostile offsets and lengths). Every case is bytes to write, so the framing itself is under
 * test; a seed replays the same cases byte for byte.
 */
import { encodeFrame, writePrefix } from "../../transport/frame.ts";
import { LINK_PROTOCOL_VERSION, NONCE_BYTES } from "../../transport/handshake.ts";
import type { Header } from "../../transport/types.ts";
import { SeededRandom } from "../../util/random.ts";

/** Where hostile operations aim: far from the region a verifying client uses. */
export interface FuzzTarget {
  /** The node's protocol version and identity (a hello that gets past the version check). */
  readonly version: number;
  readonly node: string;
  /** Device size; the verifying client owns [0, fuzzFrom). */
  readonly size: number;
  readonly fuzzFrom: number;
}

export interface FuzzCase {
  /** What kind of hostility, for failure messages. */
  readonly kind: string;
  /** Bytes to write, in this order (pieces, so reads split where they split). */
  readonly pieces: Uint8Array[];
  /**
   * After auth: the framing stays intact, so the node must answer the closing flush or close
   * the link; false when the case broke the framing (the node may rightly wait for more bytes).
   */
  readonly framed: boolean;
}

const OPS = [
  "read",
  "write",
  "flush",
  "trim",
  "zero",
  "extents",
  "cache",
  "media",
  "setmedia",
  "rbitmap",
  "wbitmap",
  "digest",
];

/** Values of the wrong type, or the right type at its edges. */
const ODD_VALUES: unknown[] = [
  -1,
  0,
  1.5,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  -(2 ** 53),
  Number.MAX_SAFE_INTEGER,
  Infinity,
  NaN,
  "",
  "0",
  "x".repeat(300),
  true,
  null,
  [],
  [1, 2],
  {},
  { __proto__: { polluted: true } },
  new Uint8Array(0),
  new Uint8Array(40),
];

export class NodeFuzzer {
  readonly #random: SeededRandom;
  readonly #target: FuzzTarget;

  constructor(seed: number, target: FuzzTarget) {
    this.#random = new SeededRandom(seed);
    this.#target = target;
  }

  #below(n: number): number {
    return this.#random.below(n);
  }

  #pick<T>(items: readonly T[]): T {
    return items[this.#below(items.length)]!;
  }

  #bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.#below(256);
    return out;
  }

  /** A frame prefix claiming these lengths. */
  #prefix(header: number, payload: number): Uint8Array {
    const out = new Uint8Array(8);
    writePrefix(out, 0, header, payload);
    return out;
  }

  /** Splits `bytes` into 1 to 4 pieces at random points. */
  #split(bytes: Uint8Array): Uint8Array[] {
    const cuts = Array.from({ length: this.#below(4) }, () => this.#below(bytes.length + 1))
      .sort((a, b) => a - b);
    const pieces: Uint8Array[] = [];
    let at = 0;
    for (const cut of [...cuts, bytes.length]) {
      if (cut > at) pieces.push(bytes.subarray(at, cut));
      at = Math.max(at, cut);
    }
    return pieces.length > 0 ? pieces : [bytes];
  }

  #join(parts: Uint8Array[]): Uint8Array {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** A hello that passes the version check, with one field possibly made wrong. */
  #hello(spoil: boolean): Header {
    const hello: Record<string, unknown> = {
      t: "hello",
      link: LINK_PROTOCOL_VERSION,
      version: this.#target.version,
      node: `fuzz-${this.#below(1000)}`,
      nonce: this.#bytes(NONCE_BYTES),
      auth: true,
    };
    if (spoil) {
      const field = this.#pick(["link", "version", "node", "nonce", "auth", "t", "extra"]);
      hello[field] = this.#pick(ODD_VALUES);
    }
    if (this.#below(4) === 0) hello.node = this.#target.node; // claims the node's own name
    return hello as Header;
  }

  /** A block request aimed at the fuzz region (or out of range), possibly with odd fields. */
  #request(id: number, spoil: boolean): { header: Header; payload: Uint8Array } {
    const { size, fuzzFrom } = this.#target;
    const op = this.#pick(OPS);
    const edge = [
      fuzzFrom,
      fuzzFrom + 4096 * this.#below(256),
      size - 4096,
      size - 1,
      size,
      size + 4096,
      2 ** 32,
      2 ** 52,
      Number.MAX_SAFE_INTEGER,
    ];
    const off = this.#pick(edge);
    const len = this.#pick([0, 1, 511, 4096, 65536, 1 << 20, 33 << 20, 2 ** 40, size]);
    const header: Record<string, unknown> = { t: "rq", id, op, off, len };
    if (this.#below(3) === 0) header.fua = this.#below(2) === 1;
    if (op === "zero") Object.assign(header, { fz: this.#below(2) === 1, mt: true });
    if (op === "digest") header.ch = this.#pick([4096, 65536, 1 << 20, 1 << 30]);
    let payload = new Uint8Array(0);
    if (op === "write" || op === "wbitmap") {
      // Usually as long as it says, sometimes not.
      const n = this.#below(4) === 0 ? this.#below(8192) : Math.min(len, 1 << 20);
      payload = new Uint8Array(n).fill(0xee);
    }
    if (op === "setmedia") {
      payload = new TextEncoder().encode(this.#pick([
        "{}",
        '{"flags": 7}',
        '{"storageId": "not-hex"}',
        '{"generations": {"current": "x"}}',
        "not json",
        '{"__proto__": {"x": 1}}',
        "[]",
        "null",
      ]));
      header.len = payload.length;
    }
    if (spoil) {
      const field = this.#pick(["id", "op", "off", "len", "fua", "fz", "mt", "ch", "ck", "t"]);
      header[field] = this.#pick([...ODD_VALUES, "rq", "nonsense-op"]);
    }
    return { header: header as Header, payload };
  }

  /** Bytes that break the framing itself. */
  #broken(): { kind: string; bytes: Uint8Array } {
    switch (this.#below(5)) {
      case 0:
        return { kind: "garbage", bytes: this.#bytes(1 + this.#below(2048)) };
      case 1: {
        const header = this.#pick([0, 1, 65536, 65537, 2 ** 31, 2 ** 32 - 1]);
        const payload = this.#pick([0, 1 << 20, 64 << 20, (64 << 20) + 1, 2 ** 32 - 1]);
        return {
          kind: "huge lengths",
          bytes: this.#join([this.#prefix(header, payload), this.#bytes(this.#below(64))]),
        };
      }
      case 2: {
        const frame = encodeFrame(this.#request(1, false).header, this.#bytes(this.#below(300)));
        return { kind: "truncated frame", bytes: frame.subarray(0, this.#below(frame.length)) };
      }
      case 3: {
        // A map or container header claiming more than is there, or plain noise.
        const head = this.#pick([
          [0xdf, 0xff, 0xff, 0xff, 0xff],
          [0xdd, 0xff, 0xff, 0xff, 0xff],
          [0xde, 0x00, 0x05, 0xa1, 0x74],
          [0x81, 0xa1, 0x74, 0xc1],
          [0x81, 0xa9, 0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f, 0x80],
          [0xc7, 0xff, 0x01],
          [0x81, 0xa1, 0x74, 0xd4, 0xff, 0x00],
          Array.from(this.#bytes(1 + this.#below(64))),
        ]);
        const header = new Uint8Array(head);
        return {
          kind: "malformed msgpack header",
          bytes: this.#join([this.#prefix(header.length, 0), header]),
        };
      }
      default: {
        const t = this.#pick(["bye", "ping", "pong", "refuse", "hello", "auth", "zz", ""]);
        const header = { t, reason: this.#pick(ODD_VALUES), proof: this.#pick(ODD_VALUES) };
        return { kind: `stray "${t}" frame`, bytes: encodeFrame(header as Header) };
      }
    }
  }

  /** What a peer without the secret might send instead of (or in the middle of) a handshake. */
  preAuth(): FuzzCase {
    const parts: Uint8Array[] = [];
    let kind: string;
    switch (this.#below(4)) {
      case 0: {
        const broken = this.#broken();
        kind = broken.kind;
        parts.push(broken.bytes);
        break;
      }
      case 1:
        kind = "hello with a wrong field";
        parts.push(encodeFrame(this.#hello(true)));
        break;
      case 2: {
        kind = "operations instead of a handshake";
        if (this.#below(2) === 0) parts.push(encodeFrame(this.#hello(false)));
        for (let i = 0; i < 1 + this.#below(4); i++) {
          const { header, payload } = this.#request(i, false);
          parts.push(encodeFrame(header, payload));
        }
        break;
      }
      default: {
        kind = "a hello, a bogus proof, then operations";
        parts.push(encodeFrame(this.#hello(false)));
        const auth: Record<string, unknown> = {
          t: "auth",
          info: this.#pick([new Uint8Array([0x80]), this.#bytes(8), new Uint8Array(5000)]),
          proof: this.#pick([this.#bytes(32), new Uint8Array(32), this.#bytes(31)]),
        };
        if (this.#below(3) === 0) auth[this.#pick(["info", "proof"])] = this.#pick(ODD_VALUES);
        parts.push(encodeFrame(auth as Header));
        const { header, payload } = this.#request(7, false);
        parts.push(encodeFrame(header, payload));
      }
    }
    return { kind, pieces: this.#split(this.#join(parts)), framed: false };
  }

  /**
   * What an authenticated but hostile peer might send; ends with a flush whose reply (id
   * `sentinel`) says the node got through the rest, unless something closed the link first.
   */
  postAuth(sentinel: number): FuzzCase {
    const parts: Uint8Array[] = [];
    const kinds: string[] = [];
    let framed = true;
    for (let i = 0; i < 1 + this.#below(6); i++) {
      const roll = this.#below(10);
      if (roll === 0) {
        const broken = this.#broken();
        kinds.push(broken.kind);
        parts.push(broken.bytes);
        framed = false;
        break; // the framing is broken: nothing after it can be read anyway
      }
      const spoil = roll <= 3;
      kinds.push(spoil ? "request with a wrong field" : "hostile offsets and lengths");
      const { header, payload } = this.#request(i, spoil);
      parts.push(encodeFrame(header, payload));
    }
    parts.push(encodeFrame({ t: "rq", id: sentinel, op: "flush", off: 0, len: 0 }));
    return { kind: kinds.join(", "), pieces: this.#split(this.#join(parts)), framed };
  }
}
