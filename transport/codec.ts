/**
 * The one msgpack configuration every frame header goes through. Records (msgpackr's shared
 * structure definitions) are off, so each header decodes on its own: a frame lost or dropped by
 * the medium never leaves the decoder waiting for a structure it will not see again.
 */

import { Packr, Unpackr } from "msgpackr";

const options = { useRecords: false, mapsAsObjects: true, moreTypes: false } as const;

/** Encodes frame headers. Results are short-lived: copy them before the next pack. */
export const packr: Packr = new Packr(options);

/** Decodes frame headers. Binary fields come back as views into the source bytes. */
export const unpackr: Unpackr = new Unpackr(options);
