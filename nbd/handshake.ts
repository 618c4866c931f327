/**
 * The fixed newstyle handshake and option haggling, from the greeting to the choice of an export:
 * EXPORT_NAME, GO, INFO, LIST, ABORT, STARTTLS, STRUCTURED_REPLY, EXTENDED_HEADERS,
 * LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation). Unknown options are answered
 * NBD_REP_ERR_UNSUP and haggling goes on; anything that breaks the framing ends this connection
 * only. With TLS required, nothing but STARTTLS and ABORT is answered before the upgrade.
 */
import type { BlockInfo } from "../actors/block/contract.ts";
import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  MAX_STRING,
  NBD_MAGIC_HI,
  NBD_MAGIC_LO,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_EXTENDED_HEADERS,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT,
  OPT_STARTTLS,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_POLICY,
  REP_ERR_SHUTDOWN,
  REP_ERR_TLS_REQD,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_MAGIC_HI,
  REP_MAGIC_LO,
  REP_META_CONTEXT,
  REP_SERVER,
} from "./constants.ts";
import { type BlockSizes, blockSizes, type NbdExport, transmissionFlags } from "./export.ts";
import { put16, put32, put64, ReplyMode } from "./reply.ts";
import type { StreamReader, StreamWriter } from "./stream.ts";
import type { TlsMode } from "./tls.ts";

/** The exports a server offers; "" names the default export. */
export interface ExportTable {
  find(name: string): NbdExport | undefined;
  all(): readonly NbdExport[];
}

/** The outcome of a successful handshake: what transmission runs with. */
export interface Negotiated {
  readonly export: NbdExport;
  readonly info: BlockInfo;
  readonly mode: ReplyMode;
  readonly flags: number;
  readonly sizes: BlockSizes;
  /** base:allocation was selected for this export. */
  readonly blockStatus: boolean;
  /** The connection was upgraded to TLS. */
  readonly tls: boolean;
}

/** The client broke the handshake's framing or rules; the connection is dropped. */
export class HandshakeError extends Error {
  override name = "HandshakeError";
}

/** Options longer than this are refused without being parsed (names are at most 4096 bytes). */
const MAX_OPTION_DATA = 64 * 1024;
/** Longer than this and we stop reading: the client is abusive. */
const MAX_SKIPPABLE_OPTION = 16 * 1024 * 1024;
/** Bound on options per connection, against a client that never chooses. */
const MAX_OPTIONS = 1024;
/** Option replies queued for a client that does not read them; past this we stop reading. */
const MAX_QUEUED_REPLIES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The reader and writer of a connection; both are replaced when it is upgraded to TLS. */
export interface HandshakeIo {
  readonly reader: StreamReader;
  readonly writer: StreamWriter;
}

export interface HandshakeOptions {
  /** True once the server is shutting down: options are then refused with ERR_SHUTDOWN. */
  readonly stopping: () => boolean;
  /** The TLS this server offers; without it STARTTLS is answered NBD_REP_ERR_UNSUP. */
  readonly tls?: {
    readonly mode: TlsMode;
    /**
     * Runs the TLS handshake on the connection (the ACK is written, nothing is left unread)
     * and resolves its new reader and writer. Throws when the handshake fails.
     */
    upgrade(): Promise<HandshakeIo>;
    /** Called once per connection, when an option is first refused for want of TLS. */
    refused?(): void;
  };
}

/**
 * Runs the handshake; resolves the negotiated export, or null when the client aborted or left
 * cleanly. Throws {@link HandshakeError} on a protocol violation.
 */
export async function negotiate(
  io: HandshakeIo,
  exports: ExportTable,
  options: HandshakeOptions,
): Promise<Negotiated | null> {
  let { reader, writer } = io;
  const greeting = new Uint8Array(18);
  put32(greeting, 0, NBD_MAGIC_HI);
  put32(greeting, 4, NBD_MAGIC_LO);
  put32(greeting, 8, IHAVEOPT_HI);
  put32(greeting, 12, IHAVEOPT_LO);
  put16(greeting, 16, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
  writer.send(greeting);

  const clientFlagBytes = await reader.take(4);
  if (clientFlagBytes === null) return null;
  const clientFlags = readU32(clientFlagBytes, 0);
  if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
    throw new HandshakeError(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
  const tls = options.tls;
  // TLS needs fixed newstyle; a client without it could only pick an export in plain text.
  if (tls?.mode === "require" && (clientFlags & FLAG_C_FIXED_NEWSTYLE) === 0) {
    throw new HandshakeError("TLS is required and the client does not speak fixed newstyle");
  }
  /** The connection runs over TLS. */
  let secure = false;
  let refusedForTls = false;
  /** FORCEDTLS: before the upgrade only STARTTLS and ABORT are answered. */
  const needsTls = (option: number) => {
    if (tls?.mode !== "require" || secure || option === OPT_STARTTLS || option === OPT_ABORT) {
      return false;
    }
    if (!refusedForTls) tls.refused?.();
    refusedForTls = true;
    return true;
  };

  let mode: ReplyMode = ReplyMode.Simple;
  /** Export name base:allocation was selected for, or null. */
  let metaExport: string | null = null;

  for (let count = 0; count < MAX_OPTIONS; count++) {
    if (writer.queued > MAX_QUEUED_REPLIES) await writer.drained();
    const header = await reader.take(16);
    if (header === null) return null;
    if (readU32(header, 0) !== IHAVEOPT_HI || readU32(header, 4) !== IHAVEOPT_LO) {
      throw new HandshakeError("option without the IHAVEOPT magic");
    }
    const option = readU32(header, 8);
    const length = readU32(header, 12);
    if (length > MAX_OPTION_DATA) {
      if (length > MAX_SKIPPABLE_OPTION || option === OPT_EXPORT_NAME) {
        throw new HandshakeError(`option ${option} carries ${length} bytes of data`);
      }
      await reader.skip(length);
      if (needsTls(option)) {
        reply(writer, option, REP_ERR_TLS_REQD, text("TLS is required: send NBD_OPT_STARTTLS"));
      } else {
        reply(writer, option, REP_ERR_TOO_BIG, text("option data too large"));
      }
      continue;
    }
    const taken = length === 0 ? new Uint8Array(0) : await reader.take(length);
    if (taken === null) throw new HandshakeError("client left in the middle of an option");
    const data = taken.slice(); // the reader's view is only valid until its next read

    if (needsTls(option)) {
      if (option === OPT_EXPORT_NAME) {
        // It cannot be answered with an error: the document says to end the session.
        throw new HandshakeError("TLS is required: the client chose an export without STARTTLS");
      }
      reply(writer, option, REP_ERR_TLS_REQD, text("TLS is required: send NBD_OPT_STARTTLS"));
      continue;
    }

    if (options.stopping() && option !== OPT_ABORT) {
      if (option === OPT_EXPORT_NAME) throw new HandshakeError("server is shutting down");
      reply(writer, option, REP_ERR_SHUTDOWN, text("server is shutting down"));
      continue;
    }

    switch (option) {
      case OPT_EXPORT_NAME: {
        const name = decodeString(data);
        const chosen = name === null ? undefined : exports.find(name);
        // The option cannot answer an error: the document says to terminate the session.
        if (chosen === undefined) {
          throw new HandshakeError(`no export named ${JSON.stringify(name)}`);
        }
        const info = chosen.device.info();
        const flags = transmissionFlags(info, mode !== ReplyMode.Simple);
        const out = new Uint8Array(noZeroes ? 10 : 134);
        put64(out, 0, info.size);
        put16(out, 8, flags);
        writer.send(out);
        return {
          export: chosen,
          info,
          mode,
          flags,
          sizes: blockSizes(info),
          blockStatus: metaExport !== null && exports.find(metaExport) === chosen,
          tls: secure,
        };
      }
      case OPT_ABORT:
        reply(writer, option, REP_ACK);
        await writer.drained();
        return null;
      case OPT_LIST: {
        if (data.length !== 0) {
          reply(writer, option, REP_ERR_INVALID, text("NBD_OPT_LIST takes no data"));
          break;
        }
        for (const entry of exports.all()) {
          const name = encoder.encode(entry.name);
          const description = encoder.encode(entry.description ?? "");
          const payload = new Uint8Array(4 + name.length + description.length);
          put32(payload, 0, name.length);
          payload.set(name, 4);
          payload.set(description, 4 + name.length);
          reply(writer, option, REP_SERVER, payload);
        }
        reply(writer, option, REP_ACK);
        break;
      }
      case OPT_STARTTLS: {
        if (data.length !== 0) {
          reply(writer, option, REP_ERR_INVALID, text("NBD_OPT_STARTTLS takes no data"));
          break;
        }
        if (tls === undefined) {
          reply(writer, option, REP_ERR_UNSUP, text("TLS is not enabled on this server"));
          break;
        }
        if (secure) {
          reply(writer, option, REP_ERR_INVALID, text("TLS is already on"));
          break;
        }
        if ((clientFlags & FLAG_C_FIXED_NEWSTYLE) === 0) {
          reply(writer, option, REP_ERR_POLICY, text("TLS needs fixed newstyle negotiation"));
          break;
        }
        reply(writer, option, REP_ACK);
        await writer.drained();
        if (writer.failed !== null) return null;
        // Bytes sent before our ACK would be taken as TLS records or, worse, as options that
        // seem to come through TLS: the client broke the rule to wait, and is dropped.
        if (reader.buffered > 0) {
          throw new HandshakeError(
            `client sent ${reader.buffered} bytes after NBD_OPT_STARTTLS before its reply`,
          );
        }
        ({ reader, writer } = await tls.upgrade());
        secure = true;
        // What was haggled in plain text could have been changed on the way: forget it.
        mode = ReplyMode.Simple;
        metaExport = null;
        break;
      }
      case OPT_INFO:
      case OPT_GO: {
        const request = parseInfoRequest(data);
        if (request === null) {
          reply(writer, option, REP_ERR_INVALID, text("malformed NBD_OPT_INFO/GO data"));
          break;
        }
        const chosen = exports.find(request.name);
        if (chosen === undefined) {
          reply(writer, option, REP_ERR_UNKNOWN, text(`no export named "${request.name}"`));
          break;
        }
        const info = chosen.device.info();
        const flags = transmissionFlags(info, mode !== ReplyMode.Simple);
        const sizes = blockSizes(info);
        const exportInfo = new Uint8Array(12);
        put16(exportInfo, 0, INFO_EXPORT);
        put64(exportInfo, 2, info.size);
        put16(exportInfo, 10, flags);
        reply(writer, option, REP_INFO, exportInfo);
        // Block sizes are always sent: clients ignore what they did not ask for.
        const sizeInfo = new Uint8Array(14);
        put16(sizeInfo, 0, INFO_BLOCK_SIZE);
        put32(sizeInfo, 2, sizes.min);
        put32(sizeInfo, 6, sizes.preferred);
        put32(sizeInfo, 10, sizes.max);
        reply(writer, option, REP_INFO, sizeInfo);
        if (request.infos.includes(INFO_NAME)) {
          reply(writer, option, REP_INFO, infoString(INFO_NAME, chosen.name));
        }
        if (request.infos.includes(INFO_DESCRIPTION) && chosen.description !== undefined) {
          reply(writer, option, REP_INFO, infoString(INFO_DESCRIPTION, chosen.description));
        }
        reply(writer, option, REP_ACK);
        if (option === OPT_GO) {
          return {
            export: chosen,
            info,
            mode,
            flags,
            sizes,
            blockStatus: metaExport !== null && exports.find(metaExport) === chosen,
            tls: secure,
          };
        }
        break;
      }
      case OPT_STRUCTURED_REPLY:
        if (data.length !== 0) {
          reply(writer, option, REP_ERR_INVALID, text("NBD_OPT_STRUCTURED_REPLY takes no data"));
        } else if (mode !== ReplyMode.Simple) {
          reply(writer, option, REP_ERR_INVALID, text("structured replies are already on"));
        } else {
          mode = ReplyMode.Structured;
          reply(writer, option, REP_ACK);
        }
        break;
      case OPT_EXTENDED_HEADERS:
        if (data.length !== 0) {
          reply(writer, option, REP_ERR_INVALID, text("NBD_OPT_EXTENDED_HEADERS takes no data"));
        } else if (mode === ReplyMode.Extended) {
          reply(writer, option, REP_ERR_INVALID, text("extended headers are already on"));
        } else {
          mode = ReplyMode.Extended;
          reply(writer, option, REP_ACK);
        }
        break;
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT: {
        const set = option === OPT_SET_META_CONTEXT;
        if (set) metaExport = null; // replaced even when this request fails
        if (mode === ReplyMode.Simple) {
          reply(writer, option, REP_ERR_INVALID, text("negotiate structured replies first"));
          break;
        }
        const request = parseMetaRequest(data);
        if (request === null) {
          reply(writer, option, REP_ERR_INVALID, text("malformed metadata context request"));
          break;
        }
        if (exports.find(request.name) === undefined) {
          reply(writer, option, REP_ERR_UNKNOWN, text(`no export named "${request.name}"`));
          break;
        }
        const matches = request.queries.length === 0
          ? !set // an empty list means "all" when listing and "none" when setting
          : request.queries.some((q) => q === BASE_ALLOCATION || (!set && q === "base:"));
        if (matches) {
          const name = encoder.encode(BASE_ALLOCATION);
          const payload = new Uint8Array(4 + name.length);
          put32(payload, 0, set ? BASE_ALLOCATION_ID : 0);
          payload.set(name, 4);
          reply(writer, option, REP_META_CONTEXT, payload);
          if (set) metaExport = request.name;
        }
        reply(writer, option, REP_ACK);
        break;
      }
      default:
        reply(writer, option, REP_ERR_UNSUP, text(`option ${option} is not supported`));
    }
  }
  throw new HandshakeError(`more than ${MAX_OPTIONS} options without choosing an export`);
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function text(message: string): Uint8Array {
  return encoder.encode(message);
}

function reply(writer: StreamWriter, option: number, type: number, payload?: Uint8Array): void {
  const length = payload?.length ?? 0;
  const out = new Uint8Array(20 + length);
  put32(out, 0, REP_MAGIC_HI);
  put32(out, 4, REP_MAGIC_LO);
  put32(out, 8, option);
  put32(out, 12, type);
  put32(out, 16, length);
  if (payload) out.set(payload, 20);
  writer.send(out);
}

function infoString(type: number, value: string): Uint8Array {
  const bytes = encoder.encode(value);
  const out = new Uint8Array(2 + bytes.length);
  put16(out, 0, type);
  out.set(bytes, 2);
  return out;
}

/** A protocol string: valid UTF-8, no NUL, at most 4096 bytes; null otherwise. */
function decodeString(bytes: Uint8Array): string | null {
  if (bytes.length > MAX_STRING || bytes.includes(0)) return null;
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

function parseInfoRequest(data: Uint8Array): { name: string; infos: number[] } | null {
  if (data.length < 6) return null;
  const nameLength = readU32(data, 0);
  if (nameLength > data.length - 6) return null;
  const name = decodeString(data.subarray(4, 4 + nameLength));
  if (name === null) return null;
  let at = 4 + nameLength;
  const count = (data[at]! << 8) | data[at + 1]!;
  at += 2;
  if (data.length !== at + 2 * count) return null;
  const infos: number[] = [];
  for (let i = 0; i < count; i++, at += 2) infos.push((data[at]! << 8) | data[at + 1]!);
  return { name, infos };
}

function parseMetaRequest(data: Uint8Array): { name: string; queries: string[] } | null {
  if (data.length < 8) return null;
  const nameLength = readU32(data, 0);
  if (nameLength > data.length - 8) return null;
  const name = decodeString(data.subarray(4, 4 + nameLength));
  if (name === null) return null;
  let at = 4 + nameLength;
  const count = readU32(data, at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return null;
    const length = readU32(data, at);
    at += 4;
    if (length > data.length - at) return null;
    const query = decodeString(data.subarray(at, at + length));
    if (query === null) return null;
    queries.push(query);
    at += length;
  }
  if (at !== data.length) return null;
  return { name, queries };
}
