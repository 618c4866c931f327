/**
 * `serve`: accepts connections on a URL and hands each handshaken link to the application, within
 * limits a peer cannot push it past: a bound on handshakes pending (strangers; when full, the
 * oldest is dropped so a flood of idle connections cannot lock out a real peer) and a bound on
 * links (checked once the peer has proven itself, before this end proves itself). A bad
 * handshake or frame ends that connection only; refusals are logged once per burst.
 */

import { systemClock } from "../util/clock.ts";
import { silentLogger } from "../util/log.ts";
import { type DialOptions, transportFor } from "./dial.ts";
import { FramedLink, LinkRefused } from "./link.ts";
import { RefusalLog } from "./refusal_log.ts";
import type { Duplex, Hello, Link } from "./types.ts";

export interface ServeOptions extends DialOptions {
  /** Asked once a peer proved itself; a string refuses it with that reason. */
  readonly admit?: (peer: Hello) => string | undefined;
  /** Links held at once; a peer beyond it is refused after it proved itself. Default 256. */
  readonly maxLinks?: number;
  /** Connections still in their handshake; beyond it the oldest is dropped. Default 64. */
  readonly maxPendingHandshakes?: number;
}

/** A running server: its URL (with the real port) and the links it holds. */
export interface Server {
  readonly url: string;
  readonly links: ReadonlySet<Link>;
  /** Connections still in their handshake. */
  readonly pending: number;
  /** Stops accepting, closes every link, and resolves when all are closed. */
  close(reason?: string): Promise<void>;
}

/** Listens on `url` and hands each handshaken link to `onLink`. */
export async function serve(
  url: string,
  options: ServeOptions,
  onLink: (link: FramedLink) => void,
): Promise<Server> {
  const logger = options.logger ?? silentLogger;
  const maxLinks = options.maxLinks ?? 256;
  const maxPending = options.maxPendingHandshakes ?? 64;
  if (!(maxLinks >= 1) || !(maxPending >= 1)) {
    throw new RangeError("serve: maxLinks and maxPendingHandshakes must be at least 1");
  }
  const refusals = new RefusalLog(logger, options.clock ?? systemClock);
  const listener = await transportFor(url, options).listen(url);
  const links = new Set<Link>();
  /** In accept order, so the first is the oldest. */
  const handshaking = new Set<FramedLink>();
  const tasks = new Set<Promise<void>>();
  /** Links admitted (the peer proved itself) whose handshake has not returned yet. */
  let admitted = 0;

  const start = (duplex: Duplex): void => {
    if (handshaking.size >= maxPending) {
      const oldest = handshaking.values().next().value!;
      handshaking.delete(oldest);
      oldest.abortHandshake(
        `server busy: ${maxPending} handshakes pending, its limit; the oldest was dropped`,
      );
    }
    let admittedHere = false;
    const link = new FramedLink(duplex, {
      ...options,
      role: "responder",
      onRefused: (remote, reason) => refusals.note(remote, reason),
      admit: (peer) => {
        if (links.size + admitted >= maxLinks) {
          return `server full: it holds ${maxLinks} links, its limit; try again later`;
        }
        const refusal = options.admit?.(peer);
        if (refusal !== undefined) return refusal;
        admitted++;
        admittedHere = true;
        return undefined;
      },
    });
    handshaking.add(link);
    const task = (async () => {
      try {
        await link.handshake();
      } catch (error) {
        if (error instanceof LinkRefused) return; // It reported why and closed its stream.
        throw error;
      } finally {
        handshaking.delete(link);
        if (admittedHere) admitted--;
      }
      links.add(link);
      void link.closed.then(() => links.delete(link));
      try {
        onLink(link);
      } catch (error) {
        logger.log("error", "link handler threw", { error: (error as Error).message });
        link.close(`server handler failed: ${(error as Error).message}`);
      }
    })();
    tasks.add(task);
    void task.finally(() => tasks.delete(task));
  };

  const acceptLoop = (async () => {
    try {
      for await (const duplex of listener) start(duplex);
    } catch (error) {
      logger.log("error", "listener failed", {
        url: listener.url,
        error: (error as Error).message,
      });
    }
  })();

  return {
    url: listener.url,
    links,
    get pending() {
      return handshaking.size;
    },
    async close(reason = "server closing") {
      listener.close();
      await acceptLoop;
      for (const link of handshaking) link.abortHandshake(reason);
      await Promise.all(tasks);
      const closing = [...links].map((link) => {
        link.close(reason);
        return link.closed;
      });
      await Promise.all(closing);
      refusals.close();
    },
  };
}
