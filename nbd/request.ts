/**
 * Transmission requests: the 28-byte compact and 32-byte extended headers parsed by hand, and the
 * one place every request is checked against the export before it reaches a device (range,
 * alignment, size, flags, capabilities, read-only). A rejected request gets the error the
 * protocol document asks for, and the connection carries on.
 */
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_FLAG_DF,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_PAYLOAD_LEN,
  CMD_FLAG_REQ_ONE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  commandName,
  EINVAL,
  ENOSPC,
  EOVERFLOW,
  EPERM,
  EXTENDED_REQUEST_MAGIC,
  FLAG_READ_ONLY,
  FLAG_SEND_CACHE,
  FLAG_SEND_DF,
  FLAG_SEND_FAST_ZERO,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
  REQUEST_MAGIC,
} from "./constants.ts";

const TWO_32 = 4294967296;

/** A parsed request header; one instance per connection is reused for every request. */
export class RequestHeader {
  flags = 0;
  type = 0;
  handleHi = 0;
  handleLo = 0;
  /** May exceed 2^53 imprecisely; anything that large is out of range anyway. */
  offset = 0;
  length = 0;

  /**
   * Fills this from a compact (28-byte) or extended (32-byte) header; false when the magic is
   * wrong, which means the stream is out of step and the connection must end.
   */
  parse(b: Uint8Array, extended: boolean): boolean {
    const magic = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    if (magic !== (extended ? EXTENDED_REQUEST_MAGIC : REQUEST_MAGIC)) return false;
    this.flags = (b[4]! << 8) | b[5]!;
    this.type = (b[6]! << 8) | b[7]!;
    this.handleHi = u32(b, 8);
    this.handleLo = u32(b, 12);
    this.offset = u32(b, 16) * TWO_32 + u32(b, 20);
    this.length = extended ? u32(b, 24) * TWO_32 + u32(b, 28) : u32(b, 24);
    return true;
  }

  /** Bytes of payload that follow this header on the wire. */
  payloadLength(extended: boolean): number {
    if (this.type === CMD_WRITE) return this.length;
    // With extended headers a client may attach a payload to other commands; we must step over it.
    if (extended && (this.flags & CMD_FLAG_PAYLOAD_LEN) !== 0) return this.length;
    return 0;
  }
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** What validation needs to know about the export and the negotiated session. */
export interface RequestLimits {
  readonly size: number;
  readonly flags: number;
  readonly minBlock: number;
  readonly maxBlock: number;
  /** A metadata context was selected for this export, so BLOCK_STATUS is allowed. */
  readonly blockStatus: boolean;
}

export interface Rejection {
  readonly error: number;
  readonly message: string;
}

function reject(error: number, message: string): Rejection {
  return { error, message };
}

/** Flags each command may carry (FUA is added when SEND_FUA was advertised). */
function allowedFlags(type: number, flags: number): number {
  switch (type) {
    case CMD_READ:
      return flags & FLAG_SEND_DF ? CMD_FLAG_DF : 0;
    case CMD_WRITE_ZEROES:
      return CMD_FLAG_NO_HOLE | (flags & FLAG_SEND_FAST_ZERO ? CMD_FLAG_FAST_ZERO : 0);
    case CMD_BLOCK_STATUS:
      return CMD_FLAG_REQ_ONE;
    default:
      return 0;
  }
}

/** The capability flag a command needs advertised, or 0 when it is always there. */
function requiredFlag(type: number): number {
  switch (type) {
    case CMD_FLUSH:
      return FLAG_SEND_FLUSH;
    case CMD_TRIM:
      return FLAG_SEND_TRIM;
    case CMD_WRITE_ZEROES:
      return FLAG_SEND_WRITE_ZEROES;
    case CMD_CACHE:
      return FLAG_SEND_CACHE;
    default:
      return 0;
  }
}

/**
 * Checks a request (other than DISC) against the export; null when it may go to the device.
 * Order follows the document's advice: unknown command and flags, read-only, capability,
 * range (ENOSPC for writes past the end), alignment, then size.
 */
export function validateRequest(
  req: RequestHeader,
  limits: RequestLimits,
  extended: boolean,
): Rejection | null {
  const { type, flags, offset, length } = req;
  if (type > CMD_BLOCK_STATUS) return reject(EINVAL, `unknown command ${type}`);

  let allowed = allowedFlags(type, limits.flags);
  if (limits.flags & FLAG_SEND_FUA) allowed |= CMD_FLAG_FUA;
  if (extended && type === CMD_WRITE) allowed |= CMD_FLAG_PAYLOAD_LEN;
  const bad = flags & ~allowed;
  if (bad !== 0) {
    return reject(EINVAL, `flags 0x${bad.toString(16)} are not valid for ${commandName(type)}`);
  }

  const writes = type === CMD_WRITE || type === CMD_TRIM || type === CMD_WRITE_ZEROES;
  if (writes && (limits.flags & FLAG_READ_ONLY) !== 0) {
    return reject(EPERM, `${commandName(type)} on a read-only export`);
  }
  const required = requiredFlag(type);
  if (required !== 0 && (limits.flags & required) === 0) {
    return reject(EINVAL, `${commandName(type)} is not supported by this export`);
  }

  if (type === CMD_FLUSH) {
    if (offset !== 0 || length !== 0) return reject(EINVAL, "FLUSH offset and length must be 0");
    return null;
  }
  if (type === CMD_BLOCK_STATUS && !limits.blockStatus) {
    return reject(EINVAL, "BLOCK_STATUS without a metadata context selected for this export");
  }

  if (length === 0) return reject(EINVAL, `${commandName(type)} of length 0`);
  if (offset + length > limits.size) {
    const error = type === CMD_WRITE || type === CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
    return reject(
      error,
      `${commandName(type)} ${offset}+${length} is beyond the end of the export (${limits.size})`,
    );
  }
  const min = limits.minBlock;
  if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
    return reject(
      EINVAL,
      `${commandName(type)} ${offset}+${length} is not aligned to ${min} bytes`,
    );
  }
  const capped = type === CMD_READ || type === CMD_WRITE || type === CMD_CACHE ||
    (type === CMD_WRITE_ZEROES && (flags & CMD_FLAG_FAST_ZERO) === 0);
  if (capped && length > limits.maxBlock) {
    // Asked not to fragment a read we cannot send in one piece: the document's EOVERFLOW.
    const error = type === CMD_READ && (flags & CMD_FLAG_DF) !== 0 ? EOVERFLOW : EINVAL;
    return reject(
      error,
      `${commandName(type)} of ${length} bytes exceeds the maximum of ${limits.maxBlock}`,
    );
  }
  return null;
}
