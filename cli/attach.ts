/**
 * The lines `dst start` prints to attach its export as a disk with nbdfuse and a loop device.
 * They must work when pasted into a shell as they are: the mount folder is made first (nbdfuse
 * on a folder that is not there would mount over its parent), and losetup waits for nbdfuse's
 * pid file, which nbdfuse writes only once it serves the file (a bare `&` races it).
 */

/** `text` quoted for a POSIX shell. */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The attach command (as root) for `uri`, mounting under `folder`; and how to undo it. */
export function attachCommands(uri: string, folder: string): { attach: string; detach: string } {
  const mount = shellQuote(`${folder}/mnt`);
  const pid = shellQuote(`${folder}/mnt.pid`);
  const file = shellQuote(`${folder}/mnt/nbd`);
  const attach = `mkdir -p ${mount} && rm -f ${pid} && (nbdfuse -P ${pid} ${mount} ` +
    `${shellQuote(uri)} &) && for i in $(seq 100); do [ -s ${pid} ] && break; sleep 0.1; ` +
    `done && [ -s ${pid} ] && losetup -f --show ${file}`;
  const detach = `losetup -j ${file} -O NAME -n | xargs -r -n1 losetup -d; ` +
    `fusermount3 -u ${mount}`;
  return { attach, detach };
}
