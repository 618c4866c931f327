/**
 * Link sessions of a node: each remote node proxy names itself in its handshake with a random
 * id and numbers its links (1, 2, ... one per dial). When a proxy's newer link arrives, the node
 * closes that proxy's older links and serves nothing on the new one until every request already
 * taken off the older ones has ended. So nothing the proxy sent on a link it gave up on (frames
 * still in flight, requests still running on a hung disk) can land after what it sends on the
 * new one: a mirror that judges and resyncs a leg over the new link never has its copy
 * overwritten by an old write. A link numbered below one seen already is refused.
 */

/** One link of a proxy, as the sessions see it. */
export interface SessionLink {
  /** Closes the link (nothing more is taken off it). */
  close(reason: string): void;
  /** Resolves once no request taken off the link is running. */
  idle(): Promise<void>;
}

interface Session {
  seq: number;
  readonly links: Set<SessionLink>;
}

/** Proxies remembered at most (those without an open link are forgotten first). */
const MAX_SESSIONS = 4096;

export class LinkSessions {
  /** By proxy id, in order of last use (oldest first). */
  readonly #sessions = new Map<string, Session>();

  /** Proxies remembered now. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * Link `seq` of proxy `id` opened. Undefined: refused (the proxy has a newer link already);
   * else a promise that resolves once the proxy's older links are closed and idle.
   */
  open(id: string, seq: number, link: SessionLink): Promise<void> | undefined {
    const known = this.#sessions.get(id);
    if (known !== undefined && seq <= known.seq) return undefined;
    const session = known ?? { seq, links: new Set<SessionLink>() };
    this.#sessions.delete(id);
    this.#sessions.set(id, session);
    session.seq = seq;
    const older = [...session.links];
    session.links.clear();
    session.links.add(link);
    this.#evict();
    for (const o of older) o.close(`replaced by link ${seq} of the same proxy`);
    return Promise.all(older.map((o) => o.idle())).then(() => {});
  }

  /** A link closed. */
  closed(id: string, link: SessionLink): void {
    this.#sessions.get(id)?.links.delete(link);
  }

  #evict(): void {
    if (this.#sessions.size <= MAX_SESSIONS) return;
    for (const [id, s] of this.#sessions) {
      if (this.#sessions.size <= MAX_SESSIONS) return;
      if (s.links.size === 0) this.#sessions.delete(id);
    }
  }
}
