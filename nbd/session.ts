/**
 * The transmission phase of one connection. The reader keeps parsing requests while earlier ones
 * run on the device, replies go out as soon as each request completes, in any order, through a
 * batching writer. Every request, rejected ones too, holds part of the connection's budget and of
 * the server's from the moment it is read until its reply is written to the socket, so a client
 * that stops reading replies stops being read from, and the replies queued for it stay bounded.
 * Every request is validated once here, at the edge; a rejected one gets its protocol error and
 * the connection carries on.
 */
import { BlockError, type Extent } from "../actors/block/contract.ts";
import type { Logger } from "../util/log.ts";
import { Budget } from "./budget.ts";
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_DISC,
  CMD_FLAG_DF,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  COMPACT_REQUEST_SIZE,
  ESHUTDOWN,
  EXTENDED_REQUEST_SIZE,
  MIN_DOS_LENGTH,
  READ_HEADROOM,
  REPLY_FLAG_DONE,
  REPLY_TYPE_OFFSET_DATA,
  SIMPLE_REPLY_SIZE,
} from "./constants.ts";
import type { Negotiated } from "./handshake.ts";
import type { BufferPool } from "../util/buffer_pool.ts";
import { chunkHeaderSize, put64, putChunkHeader, putSimpleReply, ReplyMode } from "./reply.ts";
import { MAX_EXTENTS, MIN_HOLE, ReplySender } from "./reply_sender.ts";
import { RequestHeader, type RequestLimits, validateRequest } from "./request.ts";
import type { ByteStream, StreamReader, StreamWriter } from "./stream.ts";

export interface SessionOptions {
  /** Most requests read and not yet answered on the socket, on this connection. */
  readonly maxInFlight: number;
  /** Most payload bytes (write data, read buffers, reply data) those requests may hold. */
  readonly maxInFlightBytes: number;
  /** The server-wide budget every connection's requests also draw from. */
  readonly shared: Budget;
  readonly pool: BufferPool;
  readonly log: Logger;
}

/** Reads at least this long look for holes so zeros need not cross the wire. */
const SPARSE_READ = 64 * 1024;
/**
 * What a block status request is charged: the largest reply it can queue. Other payload-free
 * replies (an ack, an error of at most 4 KiB of text) are bounded by the request count alone.
 */
const BLOCK_STATUS_COST = 64 + 16 * MAX_EXTENTS;
/**
 * Bytes a connection may always hold, even when the server-wide budget is spent: clients that
 * stall with the whole budget cannot stop another from being served (at this pace) until they
 * are dropped. The server holds at most its budget plus this much per connection.
 */
const OWN_FLOOR = 1024 * 1024;

/** How a session ended, for logs and tests. */
export type SessionEnd =
  | "disconnect"
  | "eof"
  | "protocol-error"
  | "io-error"
  | "shutdown"
  | "stalled"
  | "idle";

export class Session {
  readonly #stream: ByteStream;
  readonly #reader: StreamReader;
  readonly #writer: StreamWriter;
  readonly #options: SessionOptions;
  readonly #pool: BufferPool;
  readonly #n: Negotiated;
  readonly #mode: ReplyMode;
  readonly #limits: RequestLimits;
  readonly #header = new RequestHeader();
  readonly #reply: ReplySender;
  readonly #local: Budget;
  readonly #shared: Budget;
  #stopping = false;
  #closed = false;
  /** Why the server ended this session, when it did (stall or idle timeout). */
  #abortedFor: SessionEnd | null = null;
  /** A request has been read and waits for budget. */
  #waiting = false;

  constructor(
    stream: ByteStream,
    reader: StreamReader,
    writer: StreamWriter,
    negotiated: Negotiated,
    options: SessionOptions,
  ) {
    this.#stream = stream;
    this.#reader = reader;
    this.#writer = writer;
    this.#options = options;
    this.#pool = options.pool;
    this.#local = new Budget(options.maxInFlight, options.maxInFlightBytes);
    this.#shared = options.shared;
    this.#n = negotiated;
    this.#mode = negotiated.mode;
    this.#limits = {
      size: negotiated.info.size,
      flags: negotiated.flags,
      minBlock: negotiated.sizes.min,
      maxBlock: negotiated.sizes.max,
      blockStatus: negotiated.blockStatus,
    };
    this.#reply = new ReplySender(
      writer,
      this.#mode,
      this.#pool,
      options.log,
      (cost) => this.#done(cost),
    );
  }

  /** Requests read and not yet answered on the socket. */
  get inFlight(): number {
    return this.#local.count;
  }

  /** Whether a request of this client is running, unanswered, or waiting for budget. */
  get busy(): boolean {
    return this.#local.count > 0 || this.#waiting;
  }

  /** Ends the session now (the client stalled or idled too long); its requests still settle. */
  abort(reason: "stalled" | "idle"): void {
    this.#abortedFor ??= reason;
    this.#close();
  }

  /**
   * Graceful stop: requests already received finish and are answered, later ones get
   * ESHUTDOWN, then the connection closes.
   */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    await this.#settle();
    this.#close();
  }

  /** Serves requests until the client disconnects, vanishes or breaks the protocol. */
  async run(): Promise<SessionEnd> {
    let end: SessionEnd = "eof";
    try {
      end = await this.#loop();
    } catch (error) {
      end = this.#closed ? "shutdown" : "io-error";
      if (!this.#closed) {
        this.#options.log.log("debug", "nbd connection read failed", { error: String(error) });
      }
    }
    await this.#settle();
    this.#close();
    return this.#abortedFor ?? end;
  }

  async #loop(): Promise<SessionEnd> {
    const extended = this.#mode === ReplyMode.Extended;
    const headerSize = extended ? EXTENDED_REQUEST_SIZE : COMPACT_REQUEST_SIZE;
    const req = this.#header;
    const reader = this.#reader;
    const maxPayload = Math.max(this.#limits.maxBlock, MIN_DOS_LENGTH);
    while (true) {
      // Replies can no longer reach the client: requests still buffered would be work for no one.
      if (this.#writer.failed !== null) return "io-error";
      const bytes = reader.takeBuffered(headerSize) ?? await reader.take(headerSize);
      if (bytes === null) return this.#stopping ? "shutdown" : "eof";
      if (!req.parse(bytes, extended)) {
        this.#options.log.log("warn", "nbd request with a bad magic: closing the connection");
        return "protocol-error";
      }
      if (req.type === CMD_DISC) return "disconnect";

      const payload = req.payloadLength(extended);
      if (payload > maxPayload) {
        this.#options.log.log("warn", "nbd request payload too large: closing the connection", {
          length: payload,
        });
        return "protocol-error";
      }
      const rejection = validateRequest(req, this.#limits, extended);
      const refused = rejection !== null || this.#stopping;
      const type = req.type;
      const cost = refused ? 0 : costOf(type, req.length);
      // No budget, no further reading: a client that does not take its replies is stalled here.
      if (!this.#fits(cost)) {
        if (!await this.#acquire(cost)) return "shutdown";
      }
      this.#local.take(cost);
      this.#shared.take(cost);
      if (refused) {
        if (payload > 0) {
          try {
            await reader.skip(payload);
          } catch (error) {
            this.#done(cost);
            throw error;
          }
        }
        const error = rejection?.error ?? ESHUTDOWN;
        const message = rejection?.message ?? "server is shutting down";
        this.#reply.error(req.handleHi, req.handleLo, req.offset, error, message, cost);
        continue;
      }
      if (type === CMD_WRITE) {
        const buffer = this.#pool.get(req.length);
        const data = buffer.subarray(0, req.length);
        try {
          await reader.readInto(data);
        } catch (error) {
          this.#pool.put(buffer);
          this.#done(cost);
          throw error;
        }
        this.#dispatchWrite(req.handleHi, req.handleLo, req.offset, data, buffer, req.flags, cost);
      } else {
        this.#dispatch(type, req.flags, req.handleHi, req.handleLo, req.offset, req.length, cost);
      }
    }
  }

  /**
   * Waits until both budgets have room for `cost`; false when the session closed or its client
   * went away meanwhile (then the request just read is work for no one).
   */
  async #acquire(cost: number): Promise<boolean> {
    this.#waiting = true;
    try {
      // Every give of ours reaches the shared budget too, so waiting there also sees the floor.
      while (!this.#closed && this.#writer.failed === null) {
        if (!this.#local.fits(cost)) await this.#local.changed();
        else if (!this.#fits(cost)) await this.#shared.changed();
        else return true;
      }
      return false;
    } finally {
      this.#waiting = false;
    }
  }

  /** Room for `cost` in this connection's budget, and in the server's or within the floor. */
  #fits(cost: number): boolean {
    return this.#local.fits(cost) &&
      (this.#shared.fits(cost) || this.#local.bytes + cost <= OWN_FLOOR);
  }

  /** A request's reply has been written (or dropped with the connection): its budget returns. */
  #done(cost: number): void {
    this.#local.give(cost);
    this.#shared.give(cost);
  }

  /** Waits until every request read has been answered on the socket (or dropped). */
  async #settle(): Promise<void> {
    while (this.#local.count > 0) await this.#local.changed();
    await this.#writer.drained();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#stream.close();
    } catch {
      // already closed by the peer
    }
    // A reader waiting for budget must notice the close instead of waiting for ever.
    this.#local.wake();
    this.#shared.wake();
  }

  #dispatchWrite(
    hHi: number,
    hLo: number,
    offset: number,
    data: Uint8Array,
    buffer: Uint8Array,
    flags: number,
    cost: number,
  ): void {
    this.#n.export.device.write(offset, data, (flags & CMD_FLAG_FUA) !== 0).then(
      () => {
        this.#pool.put(buffer);
        this.#reply.ok(hHi, hLo, offset, cost);
      },
      (error) => {
        this.#pool.put(buffer);
        this.#reply.failure(hHi, hLo, offset, error, CMD_WRITE, cost);
      },
    );
  }

  #dispatch(
    type: number,
    flags: number,
    hHi: number,
    hLo: number,
    offset: number,
    length: number,
    cost: number,
  ): void {
    let work: Promise<void>;
    const device = this.#n.export.device;
    const fua = (flags & CMD_FLAG_FUA) !== 0;
    // Each path's last reply segment gives the budget back once written; a path that throws
    // has sent nothing final, and its error reply does it instead.
    switch (type) {
      case CMD_READ:
        work = this.#read(hHi, hLo, offset, length, flags, cost);
        break;
      case CMD_FLUSH:
        work = device.flush().then(() => this.#reply.ok(hHi, hLo, offset, cost));
        break;
      case CMD_TRIM:
        work = device.trim(offset, length, fua).then(() => this.#reply.ok(hHi, hLo, offset, cost));
        break;
      case CMD_CACHE:
        work = device.cache(offset, length).then(() => this.#reply.ok(hHi, hLo, offset, cost));
        break;
      case CMD_WRITE_ZEROES:
        work = device.zero(offset, length, {
          fua,
          fastZero: (flags & CMD_FLAG_FAST_ZERO) !== 0,
          mayTrim: (flags & CMD_FLAG_NO_HOLE) === 0,
        }).then(() => this.#reply.ok(hHi, hLo, offset, cost));
        break;
      case CMD_BLOCK_STATUS:
        work = this.#blockStatus(hHi, hLo, offset, length, flags, cost);
        break;
      default:
        work = Promise.reject(new BlockError("EINVAL", `unexpected command ${type}`));
    }
    work.then(undefined, (error) => this.#reply.failure(hHi, hLo, offset, error, type, cost));
  }

  async #read(
    hHi: number,
    hLo: number,
    offset: number,
    length: number,
    flags: number,
    cost: number,
  ) {
    const device = this.#n.export.device;
    if (this.#mode === ReplyMode.Simple) {
      const buffer = this.#pool.get(SIMPLE_REPLY_SIZE + length);
      const data = await this.#readInto(buffer, SIMPLE_REPLY_SIZE, offset, length);
      putSimpleReply(buffer, 0, 0, hHi, hLo);
      this.#reply.withData(buffer, 0, SIMPLE_REPLY_SIZE, data, cost);
      return;
    }

    let extents: Extent[] | null = null;
    if (
      length >= SPARSE_READ && (flags & CMD_FLAG_DF) === 0 && this.#n.info.canExtents
    ) {
      extents = await device.extents(offset, length);
      const first = extents[0];
      if (first !== undefined && first.zero && first.length >= length) {
        this.#reply.hole(hHi, hLo, offset, offset, length, REPLY_FLAG_DONE, () => this.#done(cost));
        return;
      }
      if (!extents.some((e) => e.zero && e.length >= MIN_HOLE)) extents = null;
    }

    const buffer = this.#pool.get(READ_HEADROOM + length);
    const data = await this.#readInto(buffer, READ_HEADROOM, offset, length);
    if (extents === null) {
      // One data chunk, header written in the room in front of the data: one write, no copy.
      const at = READ_HEADROOM - 8 - chunkHeaderSize(this.#mode);
      putChunkHeader(
        buffer,
        at,
        this.#mode,
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        hHi,
        hLo,
        offset,
        8 + length,
      );
      put64(buffer, READ_HEADROOM - 8, offset);
      this.#reply.withData(buffer, at, READ_HEADROOM, data, cost);
      return;
    }
    this.#reply.sparse(hHi, hLo, offset, length, extents, buffer, data, cost);
  }

  /**
   * Reads into `buffer` after `headroom` bytes kept for the reply header. When the device
   * returns the data elsewhere (a mirror that failed over: an abandoned attempt may still write
   * into our buffer, and holds it), the returned view is what gets sent.
   */
  async #readInto(
    buffer: Uint8Array,
    headroom: number,
    offset: number,
    length: number,
  ): Promise<Uint8Array> {
    try {
      return await this.#n.export.device.read(
        offset,
        length,
        buffer.subarray(headroom, headroom + length),
      );
    } catch (error) {
      this.#pool.put(buffer);
      throw error;
    }
  }

  async #blockStatus(
    hHi: number,
    hLo: number,
    offset: number,
    length: number,
    flags: number,
    cost: number,
  ) {
    const extents: Extent[] = this.#n.info.canExtents
      ? await this.#n.export.device.extents(offset, length)
      : [{ length, hole: false, zero: false }];
    const max = (flags & CMD_FLAG_REQ_ONE) !== 0 ? 1 : MAX_EXTENTS;
    this.#reply.blockStatus(hHi, hLo, offset, length, extents, max, cost);
  }
}

/** The bytes a request may hold until its reply is written. */
function costOf(type: number, length: number): number {
  if (type === CMD_READ || type === CMD_WRITE) return length;
  if (type === CMD_BLOCK_STATUS) return BLOCK_STATUS_COST;
  return 0;
}
