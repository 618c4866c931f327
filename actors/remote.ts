/**
 * Bridges two actor systems over a transport {@link Link}, so refs to actors on the peer node are
 * used exactly like local ones: tell, ask (the reply-to ref lives on the asking node), watch.
 * Messages travel as msgpack inside the frame header; a top-level `data: Uint8Array` field
 * travels as the frame payload instead (block data never goes through msgpack) and is restored,
 * as a view into the receive buffer, on the far side.
 */
import type { Frame, Header, Link } from "../transport/types.ts";
import type { Down, ExitReason, TellResult } from "./behavior.ts";
import type { AnyRef } from "./ref.ts";
import type { ActorSystem, Route } from "./system.ts";

/** Header types this module sends and takes; anything else goes to `onOtherFrame`. */
export const ACTOR_FRAME_TYPES: ReadonlySet<string> = new Set([
  "actor",
  "actor-nack",
  "actor-watch",
  "actor-unwatch",
  "actor-down",
  "actor-stop",
]);

export interface RemoteOptions {
  /** Receives frames of other types, for a link shared with another protocol. */
  readonly onOtherFrame?: (frame: Frame) => void;
}

const EXIT_REASONS: ReadonlySet<string> = new Set<ExitReason>([
  "normal",
  "crash",
  "shutdown",
  "killed",
  "noproc",
  "noconnection",
]);

/**
 * One connected peer node. While the link is open, the system routes every ref whose `node` is
 * the peer's through it; when the link closes, the route goes away, watches of the peer's actors
 * get a `noconnection` down, and asks to the peer fail with `NoConnectionError`.
 */
export class RemoteNode implements Route {
  /** The peer's node id (from its hello). */
  readonly node: string;
  /** Resolves once the link has closed and everything above was cleaned up. */
  readonly closed: Promise<void>;

  readonly #system: ActorSystem;
  readonly #link: Link;
  readonly #onOtherFrame: ((frame: Frame) => void) | undefined;
  /** Our watches of the peer's actors, by watch id. */
  readonly #watches = new Map<number, { ref: AnyRef; onDown: (down: Down) => void }>();
  /** The peer's watches of our actors: watch id → local unwatch. */
  readonly #watchedByPeer = new Map<number, () => void>();
  #watchSeq = 1;

  constructor(system: ActorSystem, link: Link, options: RemoteOptions = {}) {
    if (link.local.node !== system.node) {
      throw new Error(
        `link speaks as node "${link.local.node}" but the actor system is "${system.node}": ` +
          `dial/serve with hello.node = system.node`,
      );
    }
    this.#system = system;
    this.#link = link;
    this.node = link.peer.node;
    this.#onOtherFrame = options.onOtherFrame;
    const removeRoute = system.addRoute(this.node, this);
    link.receive((frame) => this.#onFrame(frame));
    this.closed = link.closed.then(() => {
      removeRoute();
      this.#system.failAsksTo(this.node);
      const watches = [...this.#watches.values()];
      this.#watches.clear();
      for (const { ref, onDown } of watches) onDown({ ref, reason: "noconnection" });
      for (const unwatch of this.#watchedByPeer.values()) unwatch();
      this.#watchedByPeer.clear();
    });
  }

  /** Closes the link (and so the route). */
  close(reason?: string): void {
    this.#link.close(reason);
  }

  send(ref: AnyRef, message: unknown, replyTo: AnyRef | undefined): TellResult {
    let header: Header;
    let payload: Uint8Array | undefined;
    if (
      typeof message === "object" && message !== null &&
      (message as { data?: unknown }).data instanceof Uint8Array
    ) {
      const { data, ...rest } = message as { data: Uint8Array };
      payload = data;
      header = { t: "actor", p: ref.path, i: ref.incarnation, m: rest, d: true };
    } else {
      header = { t: "actor", p: ref.path, i: ref.incarnation, m: message };
    }
    // The peer nacks a refused ask at once; it needs the ask id (replies go to our node).
    if (replyTo !== undefined && replyTo.node === this.#system.node) {
      (header as Record<string, unknown>).a = replyTo.incarnation;
    }
    return this.#send(header, payload);
  }

  watch(ref: AnyRef, onDown: (down: Down) => void): () => void {
    const w = this.#watchSeq++;
    this.#watches.set(w, { ref, onDown });
    if (this.#send({ t: "actor-watch", p: ref.path, i: ref.incarnation, w }) !== "accepted") {
      this.#watches.delete(w);
      let cancelled = false;
      queueMicrotask(() => cancelled || onDown({ ref, reason: "noconnection" }));
      return () => void (cancelled = true);
    }
    return () => {
      if (this.#watches.delete(w)) this.#send({ t: "actor-unwatch", w });
    };
  }

  stop(ref: AnyRef): TellResult {
    return this.#send({ t: "actor-stop", p: ref.path, i: ref.incarnation });
  }

  #send(header: Header, payload?: Uint8Array): TellResult {
    if (this.#link.isClosed) return "unreachable";
    try {
      this.#link.send(header, payload);
      return "accepted";
    } catch (error) {
      if (this.#link.isClosed) return "unreachable";
      // The link's send queue is full (or the message cannot be encoded): refuse, do not grow.
      this.#system.log.log("warn", "remote send refused", {
        node: this.node,
        error: (error as Error).message,
      });
      return "overloaded";
    }
  }

  #onFrame(frame: Frame): void {
    const h = frame.header as Record<string, unknown>;
    switch (h.t) {
      case "actor":
        return this.#onActor(h, frame.payload);
      case "actor-nack":
        if (typeof h.a === "number" && (h.why === "overloaded" || h.why === "dead")) {
          this.#system.refuseAsk(
            { node: this.#system.node, path: "$ask", incarnation: h.a },
            h.why,
          );
        }
        return;
      case "actor-watch":
        return this.#onWatch(h);
      case "actor-stop":
        if (typeof h.p === "string" && typeof h.i === "number") {
          this.#system.stop({ node: this.#system.node, path: h.p, incarnation: h.i });
        }
        return;
      case "actor-unwatch": {
        const unwatch = typeof h.w === "number" ? this.#watchedByPeer.get(h.w) : undefined;
        if (unwatch !== undefined) (this.#watchedByPeer.delete(h.w as number), unwatch());
        return;
      }
      case "actor-down": {
        const watch = typeof h.w === "number" ? this.#watches.get(h.w) : undefined;
        if (watch === undefined || typeof h.why !== "string" || !EXIT_REASONS.has(h.why)) return;
        this.#watches.delete(h.w as number);
        const reason = h.why as ExitReason;
        watch.onDown(
          h.e === undefined ? { ref: watch.ref, reason } : { ref: watch.ref, reason, error: h.e },
        );
        return;
      }
      default:
        if (this.#onOtherFrame !== undefined) this.#onOtherFrame(frame);
        else this.#system.log.log("warn", "unknown frame type", { node: this.node, t: h.t });
    }
  }

  #onActor(h: Record<string, unknown>, payload: Uint8Array): void {
    if (typeof h.p !== "string" || typeof h.i !== "number") {
      this.#system.log.log("warn", "malformed actor frame dropped", { node: this.node });
      return;
    }
    let message = h.m;
    if (h.d === true) {
      message = typeof message === "object" && message !== null
        ? Object.assign(message, { data: payload })
        : { data: payload };
    }
    const result = this.#system.tell(
      { node: this.#system.node, path: h.p, incarnation: h.i },
      message,
    );
    if (result !== "accepted" && typeof h.a === "number" && h.p !== "$ask") {
      this.#send({ t: "actor-nack", a: h.a, why: result === "overloaded" ? "overloaded" : "dead" });
    }
  }

  #onWatch(h: Record<string, unknown>): void {
    if (typeof h.p !== "string" || typeof h.i !== "number" || typeof h.w !== "number") return;
    const w = h.w;
    const unwatch = this.#system.watch(
      { node: this.#system.node, path: h.p, incarnation: h.i },
      (down) => {
        this.#watchedByPeer.delete(w);
        const header: Record<string, unknown> = { t: "actor-down", w, why: down.reason };
        if (down.error !== undefined) header.e = String(down.error);
        this.#send(header as Header);
      },
    );
    this.#watchedByPeer.set(w, unwatch);
  }
}

/**
 * Routes the system's messages for the link's peer node over `link` (call it on both ends).
 *
 * @example
 * ```ts
 * import { ActorSystem, connectNode } from "./mod.ts";
 * import { dial, serve } from "../transport/mod.ts";
 *
 * const a = new ActorSystem({ node: "a" });
 * const b = new ActorSystem({ node: "b" });
 * b.spawn<string>(() => (m) => console.log("b got", m), { name: "printer" });
 * const server = await serve("tcp://127.0.0.1:0", { hello: { version: 1, node: "b", info: {} } },
 *   (link) => void connectNode(b, link));
 * const remote = connectNode(a, await dial(server.url, { hello: { version: 1, node: "a", info: {} } }));
 * a.tell({ node: "b", path: "printer", incarnation: b.resolve("printer")!.incarnation }, "hi");
 * remote.close();
 * await server.close();
 * ```
 */
export function connectNode(
  system: ActorSystem,
  link: Link,
  options: RemoteOptions = {},
): RemoteNode {
  return new RemoteNode(system, link, options);
}
