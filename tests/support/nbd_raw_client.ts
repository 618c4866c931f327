/**
 * A deliberately small NBD client over a raw socket, for protocol tests: it sends exactly the
 * bytes a test asks for (including broken ones) and decodes what the server answers, so tests
 * can check error codes, reply framing and that a connection stays usable.
 */

const TWO_32 = 4294967296;
export const OPT_MAGIC = [0x49484156, 0x454f5054];

export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

/** One decoded transmission reply chunk (a simple reply is one chunk with `simple` set). */
export interface ReplyChunk {
  simple: boolean;
  flags: number;
  type: number;
  handle: number;
  error: number;
  /** Header offset (extended replies only). */
  offset: number;
  payload: Uint8Array;
}

export class RawNbdClient {
  /** The socket; a TLS connection over it after {@link startTls}. */
  conn: Deno.Conn;
  #buf = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  static async connect(port: number): Promise<RawNbdClient> {
    return new RawNbdClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /**
   * Upgrades the connection to TLS (after the server's ACK to NBD_OPT_STARTTLS); throws when the
   * handshake fails (say, the server's certificate is not signed by `caCert`).
   */
  async startTls(caCert: string, hostname = "localhost"): Promise<void> {
    if (this.#buf.length > 0) throw new Error(`${this.#buf.length} unread bytes before TLS`);
    this.conn = await Deno.startTls(this.conn as Deno.TcpConn, { caCerts: [caCert], hostname });
    // The handshake runs with the first read or write; make it happen now, so it fails here.
    await (this.conn as Deno.TlsConn).handshake();
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  async send(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += await this.conn.write(bytes.subarray(done));
  }

  /** Exactly `n` bytes, or null if the server closed first. */
  async read(n: number): Promise<Uint8Array | null> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(Math.max(65536, n));
      let got: number | null;
      try {
        got = await this.conn.read(chunk);
      } catch {
        got = null;
      }
      if (got === null) return null;
      const merged = new Uint8Array(this.#buf.length + got);
      merged.set(this.#buf);
      merged.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = merged;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  async mustRead(n: number): Promise<Uint8Array> {
    const out = await this.read(n);
    if (out === null) throw new Error(`server closed the connection (wanted ${n} bytes)`);
    return out;
  }

  /** True when the server closes the connection within `ms` (reads are drained and ignored). */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    const chunk = new Uint8Array(65536);
    while (Date.now() < deadline) {
      const timer = new Promise<"timeout">((r) => {
        const id = setTimeout(() => r("timeout"), deadline - Date.now());
        this.#timers.push(id);
      });
      const got = await Promise.race([this.conn.read(chunk).catch(() => null), timer]);
      for (const id of this.#timers.splice(0)) clearTimeout(id);
      if (got === null) return true;
      if (got === "timeout") return false;
    }
    return false;
  }
  #timers: ReturnType<typeof setTimeout>[] = [];

  /** Reads the greeting and sends client flags (FIXED_NEWSTYLE | NO_ZEROES by default). */
  async greet(clientFlags = 3): Promise<number> {
    const g = await this.mustRead(18);
    const v = new DataView(g.buffer);
    if (v.getUint32(0) !== 0x4e42444d || v.getUint32(8) !== 0x49484156) {
      throw new Error("bad greeting");
    }
    await this.send(u32(clientFlags));
    return v.getUint16(16);
  }

  async option(option: number, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    const out = new Uint8Array(16 + data.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, OPT_MAGIC[0]!);
    v.setUint32(4, OPT_MAGIC[1]!);
    v.setUint32(8, option);
    v.setUint32(12, data.length);
    out.set(data, 16);
    await this.send(out);
  }

  async optionReply(): Promise<OptionReply> {
    const h = await this.mustRead(20);
    const v = new DataView(h.buffer);
    if (v.getUint32(0) !== 0x0003e889 || v.getUint32(4) !== 0x045565a9) {
      throw new Error("bad option reply magic");
    }
    const length = v.getUint32(16);
    return {
      option: v.getUint32(8),
      type: v.getUint32(12),
      data: length ? await this.mustRead(length) : new Uint8Array(0),
    };
  }

  /** Replies up to and including the first non-REP_INFO/SERVER/META_CONTEXT one. */
  async optionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    while (true) {
      const r = await this.optionReply();
      out.push(r);
      if (r.type !== 2 && r.type !== 3 && r.type !== 4) return out;
    }
  }

  /** Sends a request header (and payload). */
  async request(
    type: number,
    handle: number,
    offset: number,
    length: number,
    options: { flags?: number; payload?: Uint8Array; extended?: boolean } = {},
  ): Promise<void> {
    const header = requestHeader(
      options.extended ?? false,
      options.flags ?? 0,
      type,
      handle,
      offset,
      length,
    );
    const payload = options.payload ?? new Uint8Array(0);
    const out = new Uint8Array(header.length + payload.length);
    out.set(header);
    out.set(payload, header.length);
    await this.send(out);
  }

  /**
   * Reads one reply chunk. For a simple reply to a successful read, pass `readLength` so its
   * data is taken as the payload.
   */
  async reply(readLength = 0): Promise<ReplyChunk> {
    const m = await this.mustRead(4);
    const magic = new DataView(m.buffer).getUint32(0);
    if (magic === 0x67446698) {
      const rest = new DataView((await this.mustRead(12)).buffer);
      const error = rest.getUint32(0);
      const handle = rest.getUint32(4) * TWO_32 + rest.getUint32(8);
      const payload = error === 0 && readLength > 0
        ? await this.mustRead(readLength)
        : new Uint8Array(0);
      return { simple: true, flags: 1, type: 0, handle, error, offset: 0, payload };
    }
    if (magic === 0x668e33ef || magic === 0x6e8a278c) {
      const extended = magic === 0x6e8a278c;
      const rest = new DataView((await this.mustRead(extended ? 28 : 16)).buffer);
      const flags = rest.getUint16(0);
      const type = rest.getUint16(2);
      const handle = rest.getUint32(4) * TWO_32 + rest.getUint32(8);
      const offset = extended ? rest.getUint32(12) * TWO_32 + rest.getUint32(16) : 0;
      const length = extended
        ? rest.getUint32(20) * TWO_32 + rest.getUint32(24)
        : rest.getUint32(12);
      const payload = length ? await this.mustRead(length) : new Uint8Array(0);
      const error = type & 0x8000 ? new DataView(payload.buffer).getUint32(0) : 0;
      return { simple: false, flags, type, handle, error, offset, payload };
    }
    throw new Error(`unexpected reply magic 0x${magic.toString(16)}`);
  }

  /** All chunks of one structured reply (until DONE). */
  async structuredReply(): Promise<ReplyChunk[]> {
    const chunks: ReplyChunk[] = [];
    while (true) {
      const c = await this.reply();
      chunks.push(c);
      if (c.flags & 1) return chunks;
    }
  }
}

export function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const enc = new TextEncoder();

/** NBD_OPT_GO / INFO data: name, then info requests. */
export function goData(name: string, infos: number[] = []): Uint8Array {
  const n = enc.encode(name);
  const out = new Uint8Array(4 + n.length + 2 + 2 * infos.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, n.length);
  out.set(n, 4);
  v.setUint16(4 + n.length, infos.length);
  infos.forEach((info, i) => v.setUint16(6 + n.length + 2 * i, info));
  return out;
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT data. */
export function metaData(name: string, queries: string[]): Uint8Array {
  const parts = [u32(enc.encode(name).length), enc.encode(name), u32(queries.length)];
  for (const q of queries) parts.push(u32(enc.encode(q).length), enc.encode(q));
  return concat(...parts);
}

/**
 * Connects and negotiates: optional structured replies / extended headers / base:allocation,
 * then NBD_OPT_GO on `name`. Returns the client, export size and transmission flags.
 */
export async function openExport(
  port: number,
  options: { name?: string; structured?: boolean; extended?: boolean; meta?: boolean } = {},
): Promise<{ client: RawNbdClient; size: number; flags: number }> {
  const client = await RawNbdClient.connect(port);
  try {
    await client.greet();
    if (options.extended) {
      await client.option(11);
      const r = await client.optionReply();
      if (r.type !== 1) throw new Error(`extended headers refused: ${r.type}`);
    } else if (options.structured) {
      await client.option(8);
      const r = await client.optionReply();
      if (r.type !== 1) throw new Error(`structured replies refused: ${r.type}`);
    }
    const name = options.name ?? "";
    if (options.meta) {
      await client.option(10, metaData(name, ["base:allocation"]));
      await client.optionReplies();
    }
    await client.option(7, goData(name));
    const replies = await client.optionReplies();
    const last = replies[replies.length - 1]!;
    if (last.type !== 1) throw new Error(`GO failed: 0x${last.type.toString(16)}`);
    const exportInfo = replies.find((r) => r.type === 3 && r.data[1] === 0)!;
    const v = new DataView(exportInfo.data.buffer);
    const size = v.getUint32(2) * TWO_32 + v.getUint32(6);
    return { client, size, flags: v.getUint16(10) };
  } catch (error) {
    client.close();
    throw error;
  }
}

/** A request header, compact (28 bytes) or extended (32), big-endian as proto.md says. */
export function requestHeader(
  extended: boolean,
  flags: number,
  type: number,
  handle: number,
  offset: number,
  length: number,
): Uint8Array {
  const out = new Uint8Array(extended ? 32 : 28);
  const v = new DataView(out.buffer);
  v.setUint32(0, extended ? 0x21e41c71 : 0x25609513);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setUint32(8, Math.floor(handle / TWO_32));
  v.setUint32(12, handle >>> 0);
  v.setUint32(16, Math.floor(offset / TWO_32));
  v.setUint32(20, offset >>> 0);
  if (extended) {
    v.setUint32(24, Math.floor(length / TWO_32));
    v.setUint32(28, length >>> 0);
  } else {
    v.setUint32(24, length);
  }
  return out;
}
