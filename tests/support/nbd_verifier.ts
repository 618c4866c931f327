/**
 * A verifying NBD client for tests that attack a server: beside the attacker it writes blocks of
 * self-describing data (every 512 bytes say their offset, the writer and a sequence number), reads
 * them back and checks every byte, so a server that stopped serving, misrouted a block or served
 * stale data fails the test with the exact sector that is wrong.
 */
import { openExport, type RawNbdClient } from "./nbd_raw_client.ts";

const SECTOR = 512;
const WRITE = 1;
const READ = 0;

/** Fills `length` bytes at `offset` so each sector names (offset, writer, seq). */
export function describingBlock(
  offset: number,
  length: number,
  writer: number,
  seq: number,
): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  for (let at = 0; at < length; at += SECTOR) {
    view.setFloat64(at, offset + at);
    view.setUint32(at + 8, writer);
    view.setUint32(at + 12, seq);
    for (let i = 16; i < SECTOR && at + i < length; i++) out[at + i] = (seq + at + i) & 0xff;
  }
  return out;
}

/** Says what the first wrong sector holds, or null when `got` is what was written. */
export function describeMismatch(got: Uint8Array, want: Uint8Array): string | null {
  if (got.length !== want.length) return `got ${got.length} bytes, wanted ${want.length}`;
  for (let at = 0; at < want.length; at += SECTOR) {
    const end = Math.min(at + SECTOR, want.length);
    for (let i = at; i < end; i++) {
      if (got[i] !== want[i]) {
        const g = new DataView(got.buffer, got.byteOffset + at, 16);
        return `sector at +${at}: holds offset ${g.getFloat64(0)} writer ${g.getUint32(8)} ` +
          `seq ${g.getUint32(12)}, byte ${i - at} differs`;
      }
    }
  }
  return null;
}

export class Verifier {
  readonly client: RawNbdClient;
  readonly #writer: number;
  #seq = 0;
  #handle = 1_000_000;

  private constructor(client: RawNbdClient, writer: number) {
    this.client = client;
    this.#writer = writer;
  }

  /** Connects with simple replies (every reply is one read away). */
  static async connect(port: number, writer = 7, name = ""): Promise<Verifier> {
    const { client } = await openExport(port, { name });
    return new Verifier(client, writer);
  }

  /**
   * Writes a describing block at `offset` and reads it back; throws on any difference, and
   * when the server has not answered both within `timeoutMs` (a server that stopped serving).
   */
  async roundTrip(offset: number, length = 8192, timeoutMs = 10_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.client.close();
        reject(new Error(`verifier ${offset}+${length}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      await Promise.race([this.#roundTrip(offset, length), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #roundTrip(offset: number, length: number): Promise<void> {
    const seq = ++this.#seq;
    const data = describingBlock(offset, length, this.#writer, seq);
    const wh = ++this.#handle;
    await this.client.request(WRITE, wh, offset, length, { payload: data });
    const w = await this.client.reply();
    if (w.handle !== wh || w.error !== 0) {
      throw new Error(`verifier write ${offset}+${length}: handle ${w.handle} error ${w.error}`);
    }
    const rh = ++this.#handle;
    await this.client.request(READ, rh, offset, length);
    const r = await this.client.reply(length);
    if (r.handle !== rh || r.error !== 0) {
      throw new Error(`verifier read ${offset}+${length}: handle ${r.handle} error ${r.error}`);
    }
    const wrong = describeMismatch(r.payload, data);
    if (wrong !== null) throw new Error(`verifier read back ${offset}+${length}: ${wrong}`);
  }

  close(): void {
    this.client.close();
  }
}
