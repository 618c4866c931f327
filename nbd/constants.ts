/**
 * The numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md): magics, handshake and
 * transmission flags, options, replies, commands and errors. One place, named as the document
 * names them, so every other file reads like the specification.
 */

/** "NBDMAGIC", sent first by the server. */
export const NBD_MAGIC_HI = 0x4e42444d;
export const NBD_MAGIC_LO = 0x41474943;
/** "IHAVEOPT": the newstyle version magic, and the prefix of every option. */
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
/** Prefix of every option reply (0x0003e889045565a9). */
export const REP_MAGIC_HI = 0x0003e889;
export const REP_MAGIC_LO = 0x045565a9;

export const REQUEST_MAGIC = 0x25609513;
export const EXTENDED_REQUEST_MAGIC = 0x21e41c71;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const EXTENDED_REPLY_MAGIC = 0x6e8a278c;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const FLAG_HAS_FLAGS = 1 << 0;
export const FLAG_READ_ONLY = 1 << 1;
export const FLAG_SEND_FLUSH = 1 << 2;
export const FLAG_SEND_FUA = 1 << 3;
export const FLAG_ROTATIONAL = 1 << 4;
export const FLAG_SEND_TRIM = 1 << 5;
export const FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const FLAG_SEND_DF = 1 << 7;
export const FLAG_CAN_MULTI_CONN = 1 << 8;
export const FLAG_SEND_CACHE = 1 << 10;
export const FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;
export const OPT_EXTENDED_HEADERS = 11;

// Option replies.
export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
const REP_ERR = 0x80000000;
export const REP_ERR_UNSUP = REP_ERR + 1;
export const REP_ERR_POLICY = REP_ERR + 2;
export const REP_ERR_INVALID = REP_ERR + 3;
export const REP_ERR_PLATFORM = REP_ERR + 4;
export const REP_ERR_TLS_REQD = REP_ERR + 5;
export const REP_ERR_UNKNOWN = REP_ERR + 6;
export const REP_ERR_SHUTDOWN = REP_ERR + 7;
export const REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;
export const REP_ERR_TOO_BIG = REP_ERR + 9;
export const REP_ERR_EXT_HEADER_REQD = REP_ERR + 10;

// NBD_REP_INFO types.
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// Commands.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

// Command flags.
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;
export const CMD_FLAG_PAYLOAD_LEN = 1 << 5;

// Structured reply flags and types.
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_BLOCK_STATUS_EXT = 6;
export const REPLY_TYPE_ERROR = (1 << 15) + 1;
export const REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// base:allocation status flags.
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

// Errors.
export const EPERM = 1;
export const EIO = 5;
export const ENOMEM = 12;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const ENOTSUP = 95;
export const ESHUTDOWN = 108;

/** The only metadata context we serve. */
export const BASE_ALLOCATION = "base:allocation";
/** The id we give `base:allocation` when a client selects it. */
export const BASE_ALLOCATION_ID = 1;

/** Longest string the protocol allows (names, messages, queries). */
export const MAX_STRING = 4096;
/** Requests shorter than this are never a denial of service (proto.md, block size section). */
export const MIN_DOS_LENGTH = 32 * 1024 * 1024;

/** Sizes of fixed wire structures. */
export const COMPACT_REQUEST_SIZE = 28;
export const EXTENDED_REQUEST_SIZE = 32;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;
export const EXTENDED_HEADER_SIZE = 32;
/** Room kept in front of read payloads so a reply header fits without copying the data. */
export const READ_HEADROOM = EXTENDED_HEADER_SIZE + 8;

const COMMAND_NAMES = [
  "READ",
  "WRITE",
  "DISC",
  "FLUSH",
  "TRIM",
  "CACHE",
  "WRITE_ZEROES",
  "BLOCK_STATUS",
];

export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `CMD_${type}`;
}
