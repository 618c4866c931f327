/**
 * The status endpoint: a hono app that shows the storage tree as JSON, as Prometheus text and as
 * a dashboard that updates itself, and takes control actions (suspend, resume, clean, dirty,
 * add or remove a leg, verify) from callers holding the bearer token. Bound to loopback unless
 * told otherwise.
 *
 *   GET    /                              the dashboard (HTML, polls /api/tree)
 *   GET    /api/tree                      the whole status (StatusJson)
 *   GET    /api/nodes/:node               one node of the tree
 *   GET    /metrics                       Prometheus text
 *   GET    /api/events?since=ID           the event history after event ID (EventPage)
 *   GET    /api/samples?since=TIME        throughput and latency samples after TIME (ms)
 *   GET    /healthz                       liveness: 200 "ok" while the process answers
 *   GET    /readyz                        readiness: 200 while every block can be served (the
 *                                         degradation said in the body), else 503 and why
 *   POST   /api/nodes/:node/:action       suspend | resume | dirty (body {} or none)
 *   POST   /api/nodes/:leg/clean          {"force": true} accepts a leg that may lack writes
 *   POST   /api/nodes/:mirror/verify      {"repairFrom": "leg1"} names the leg to trust
 *   POST   /api/nodes/:mirror/legs        add a leg: {"name": "c", "spec": {"kind": "remote", ...}}
 *   DELETE /api/nodes/:mirror/legs/:leg   remove a leg
 *
 * Control answers 401 without the right `Authorization: Bearer TOKEN` (before looking at anything
 * else, so nothing changes), 400 with the zod issues for a bad body, 404 for an unknown node, 409
 * for an action the storage refuses, 501 where this process has no control actions.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { TreeNode } from "../storage/assemble.ts";
import {
  ControlError,
  type ControlResult,
  type LegSpec,
  type StorageControl,
} from "../storage/control.ts";
import { dashboardHtml } from "./dashboard.ts";
import { EVENT_CAPACITY, type EventLog } from "./events.ts";
import { SAMPLE_INTERVAL_MS, type SampleRing } from "./samples.ts";
import type { IoStats } from "./io.ts";
import { healthOf } from "./health.ts";
import { metricsText } from "./metrics.ts";
import { processInfo } from "./process.ts";
import { bearerMatches } from "./token.ts";
import { findNode, type StatusJson, treeJson } from "./tree.ts";

export interface StatusSource {
  /** The storage's name (the root node's). */
  readonly name: string;
  readonly tree: TreeNode;
  /** Where clients attach, shown on the page. */
  readonly exports: readonly string[];
  /** Counters of the exported device, when it is wrapped in a CountingBlockDevice. */
  readonly io?: IoStats;
  /** Maintenance actions; without them the control routes answer 501. */
  readonly control?: StorageControl;
  /** The bearer token control actions need; required with `control`. */
  readonly token?: string;
  /** The process's event history (GET /api/events); empty without one. */
  readonly events?: EventLog;
  /** Throughput and latency over time (GET /api/samples); empty without them. */
  readonly samples?: SampleRing;
}

/** Largest control request body accepted. */
const MAX_BODY = 64 * 1024;

const nodeName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, {
  message: "a node name: letters, digits, '_', '.', '-', at most 64",
});
const size = z.union([z.number().int().positive(), z.string().min(1).max(32)]);
export const legSpecSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("memory"), size }),
  z.strictObject({ kind: z.literal("file"), path: z.string().min(1), size: size.optional() }),
  z.strictObject({
    kind: z.literal("remote"),
    url: z.string().regex(/^(tcp|unix|quic):\/\//, { message: "tcp://, unix:// or quic:// URL" }),
    storageId: z.string().regex(/^[0-9a-f]{32}$/).optional(),
  }),
]);
export const addLegSchema = z.strictObject({ name: nodeName, spec: legSpecSchema });
/** The simple actions take no arguments; an empty object (or no body) is all they accept. */
const noArguments = z.strictObject({});
const cleanArguments = z.strictObject({ force: z.boolean().optional() });
const verifyArguments = z.strictObject({ repairFrom: nodeName.optional() });

const SIMPLE_ACTIONS = ["suspend", "resume", "clean", "dirty", "verify"] as const;

/** Takes one consistent snapshot of everything the views show. */
export function statusSnapshot(source: StatusSource): StatusJson {
  return {
    name: source.name,
    time: Date.now(),
    exports: source.exports,
    ...(source.io === undefined ? {} : { io: source.io.snapshot() }),
    control: source.control !== undefined,
    process: processInfo(),
    tree: treeJson(source.tree),
  };
}

class HttpProblem extends Error {
  constructor(readonly status: 400 | 401 | 404 | 409 | 413 | 500 | 501, readonly body: object) {
    super(JSON.stringify(body));
  }
}

export function statusApp(source: StatusSource): Hono {
  if (source.control !== undefined && (source.token === undefined || source.token === "")) {
    throw new Error("statusApp: control actions need a bearer token");
  }
  const app = new Hono();

  app.get("/", (c) => {
    c.header("Cache-Control", "no-store");
    return c.html(dashboardHtml(source.name));
  });
  app.get("/api/tree", (c) => {
    c.header("Cache-Control", "no-store");
    return c.json(statusSnapshot(source));
  });
  app.get("/api/nodes/:node", (c) => {
    const node = findNode(treeJson(source.tree), c.req.param("node"));
    if (node === undefined) throw unknownNode(c.req.param("node"));
    return c.json(node);
  });
  app.get("/api/events", (c) => {
    c.header("Cache-Control", "no-store");
    const since = counter(c.req.query("since"), "since", "the id of the last event you saw");
    const limit = counter(c.req.query("limit"), "limit", "how many events at most");
    const page = source.events?.since(since ?? 0, limit ?? EVENT_CAPACITY) ??
      { events: [], latest: 0, missed: 0 };
    return c.json(page);
  });
  app.get("/api/samples", (c) => {
    c.header("Cache-Control", "no-store");
    const since = counter(c.req.query("since"), "since", "a time in milliseconds since the epoch");
    return c.json({
      intervalMs: SAMPLE_INTERVAL_MS,
      samples: source.samples?.since(since ?? 0) ?? [],
    });
  });
  app.get("/metrics", (c) => {
    c.header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return c.body(metricsText(statusSnapshot(source)));
  });

  // Probes in the Kubernetes style: plain text, no token, never cached.
  app.get("/healthz", (c) => {
    c.header("Cache-Control", "no-store");
    return c.text("ok\n");
  });
  app.get("/readyz", (c) => {
    c.header("Cache-Control", "no-store");
    const report = healthOf(treeJson(source.tree));
    const body = report.health === "healthy"
      ? "ok\n"
      : `${report.health === "down" ? "not ready" : "ok"}: ${report.health}\n` +
        report.reasons.map((r) => `  ${r}\n`).join("");
    return c.text(body, report.health === "down" ? 503 : 200);
  });

  // Every control route checks the token first: a caller without it learns nothing and
  // changes nothing.
  app.on(["POST", "PUT", "PATCH", "DELETE"], "/api/*", async (c, next) => {
    if (source.token === undefined || !bearerMatches(c.req.header("Authorization"), source.token)) {
      c.header("WWW-Authenticate", 'Bearer realm="dst"');
      return c.json({ error: "control needs the status token: Authorization: Bearer TOKEN" }, 401);
    }
    await next();
    return undefined;
  });

  app.post("/api/nodes/:mirror/legs", async (c) => {
    const control = controlOf(source);
    const mirror = knownNode(source, c.req.param("mirror"));
    const body = parse(addLegSchema, await jsonBody(c));
    return c.json(await act(() => control.addLeg(mirror, body.name, legSpec(body.spec))));
  });
  app.delete("/api/nodes/:mirror/legs/:leg", async (c) => {
    const control = controlOf(source);
    const mirror = knownNode(source, c.req.param("mirror"));
    const leg = knownNode(source, c.req.param("leg"));
    parse(noArguments, await jsonBody(c));
    return c.json(await act(() => control.removeLeg(mirror, leg)));
  });
  app.post("/api/nodes/:node/:action", async (c) => {
    const action = c.req.param("action");
    if (!(SIMPLE_ACTIONS as readonly string[]).includes(action)) {
      throw new HttpProblem(404, {
        error: `no such action: ${action}; use one of ${SIMPLE_ACTIONS.join(", ")} ` +
          "(or POST /api/nodes/MIRROR/legs, DELETE /api/nodes/MIRROR/legs/LEG)",
      });
    }
    const control = controlOf(source);
    const node = knownNode(source, c.req.param("node"));
    const body = await jsonBody(c);
    switch (action) {
      case "clean": {
        const { force } = parse(cleanArguments, body);
        return c.json(await act(() => control.clean(node, force ?? false)));
      }
      case "verify": {
        const { repairFrom } = parse(verifyArguments, body);
        return c.json(await act(() => control.verify(node, repairFrom)));
      }
      default:
        parse(noArguments, body);
        return c.json(await act(() => control[action as "suspend" | "resume" | "dirty"](node)));
    }
  });

  app.notFound((c) => c.json({ error: `no such page: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    if (error instanceof HttpProblem) return c.json(error.body, error.status);
    return c.json({ error: error.message }, 500);
  });
  return app;
}

/** A query parameter that must be a whole number of at least 0, when given; else a 400. */
function counter(value: string | undefined, name: string, what: string): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new HttpProblem(400, { error: `?${name}=${value}: give ${what}, a whole number` });
  }
  return n;
}

/** Drops absent optional fields, as the control API's exact optional types want. */
function legSpec(spec: z.infer<typeof legSpecSchema>): LegSpec {
  switch (spec.kind) {
    case "memory":
      return { kind: "memory", size: spec.size };
    case "file":
      return {
        kind: "file",
        path: spec.path,
        ...(spec.size === undefined ? {} : { size: spec.size }),
      };
    case "remote":
      return {
        kind: "remote",
        url: spec.url,
        ...(spec.storageId === undefined ? {} : { storageId: spec.storageId }),
      };
  }
}

function controlOf(source: StatusSource): StorageControl {
  if (source.control === undefined) {
    throw new HttpProblem(501, {
      error: "this process has no control actions; use the status endpoint of the storage " +
        "(dst serve) whose mirror holds the node",
    });
  }
  return source.control;
}

function unknownNode(name: string): HttpProblem {
  return new HttpProblem(404, { error: `no node named "${name}" in this storage` });
}

/** The name, once it is known to the tree or to control; else a 404. */
function knownNode(source: StatusSource, name: string): string {
  const inTree = findNode(source.tree, name) !== undefined;
  if (!inTree && !(source.control?.nodes().includes(name) ?? false)) throw unknownNode(name);
  return name;
}

async function jsonBody(c: Context): Promise<unknown> {
  const declared = Number(c.req.header("Content-Length") ?? "0");
  if (declared > MAX_BODY) throw new HttpProblem(413, { error: `body over ${MAX_BODY} bytes` });
  const text = await boundedText(c.req.raw.body);
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpProblem(400, { error: `the body is not JSON: ${(error as Error).message}` });
  }
}

/**
 * The body as text, read no further than MAX_BODY: a chunked body declares no length, and an
 * endless one must be refused at the limit, not buffered.
 */
async function boundedText(body: ReadableStream<Uint8Array> | null): Promise<string> {
  if (body === null) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_BODY) throw new HttpProblem(413, { error: `body over ${MAX_BODY} bytes` });
      chunks.push(value);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new HttpProblem(400, {
      error: z.prettifyError(result.error),
      issues: result.error.issues,
    });
  }
  return result.data;
}

/** Runs a control action; its refusals become 404/409, anything else a 500. */
async function act(action: () => Promise<ControlResult>): Promise<ControlResult> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof ControlError) {
      const status = error.code === "unknown-node" ? 404 : error.code === "impossible" ? 409 : 500;
      throw new HttpProblem(status, { error: error.message, code: error.code });
    }
    throw new HttpProblem(500, { error: (error as Error).message ?? String(error) });
  }
}

/** Serves the app on HOST:PORT; resolves once listening, with the bound address. */
export function serveStatus(
  app: Hono,
  hostPort: string,
): Promise<{ url: string; shutdown(): Promise<void> }> {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(hostPort);
  if (match === null) {
    throw new Error(`--status ${hostPort}: expected HOST:PORT, e.g. 127.0.0.1:8080`);
  }
  const hostname = match[1]!.replace(/^\[(.*)\]$/, "$1");
  const port = Number(match[2]);
  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname,
        port,
        onListen: (addr) => {
          const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
          resolve({ url: `http://${host}:${addr.port}/`, shutdown: () => server.shutdown() });
        },
      }, app.fetch);
    } catch (error) {
      reject(error);
    }
  });
}
