/**
 * Seeded HTTP requests for fuzzing the status app's control edge: methods (odd, lowercase),
 * paths (every route, unknown ones, traversal, percent-encoding good and broken, unicode, very
 * long), bearer tokens (missing, wrong, truncated, padded, in the wrong place, right), and
 * bodies (none, JSON of every shape, prototype keys, deep nesting, broken JSON, huge, endless).
 */
import { FuzzGen } from "./fuzz_gen.ts";

export interface HttpCase {
  readonly index: number;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | "endless" | null;
  /** The request carries exactly the right bearer token. */
  readonly authorized: boolean;
}

/** Methods a Request can carry (CONNECT, TRACE and TRACK are refused by fetch itself). */
const METHODS = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "PROPFIND",
  "patch",
  "FOO",
  "M-SEARCH",
];
const ACTIONS = ["suspend", "resume", "clean", "dirty", "verify", "SUSPEND", "explode", "", "legs"];
const NODES = [
  "a",
  "b",
  "m",
  "zz",
  "c",
  "%61",
  "..",
  "%2e%2e",
  "a%2Fb",
  "%ZZ",
  "%",
  "%00",
  "é",
  "%C3%A9",
  "🙂",
  "a b",
  "a;b",
  "A",
  "constructor",
  "__proto__",
  "toString",
];

/** A URL-safe rendering of arbitrary text, sometimes left raw for the URL parser to judge. */
function pathPart(g: FuzzGen, text: string): string {
  if (!g.chance(0.7)) return text.replace(/[\0\r\n#?]/g, "_");
  // Byte by byte, so lone surrogates (which encodeURIComponent refuses) still make a path.
  return [...new TextEncoder().encode(text)].map((b) =>
    /[A-Za-z0-9_.~-]/.test(String.fromCharCode(b))
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`
  ).join("");
}

function node(g: FuzzGen): string {
  if (g.chance(0.1)) return "n".repeat(g.pick([65, 300, 5000]));
  return g.chance(0.75) ? g.pick(NODES) : pathPart(g, g.text(4));
}

function path(g: FuzzGen, token: string): string {
  const templates = [
    () => "/",
    () => "/api/tree",
    () => "/metrics",
    () => `/api/nodes/${node(g)}`,
    () => `/api/nodes/${node(g)}/${g.pick(ACTIONS)}`,
    () => `/api/nodes/${node(g)}/legs`,
    () => `/api/nodes/${node(g)}/legs/${node(g)}`,
    () => `/api/${pathPart(g, g.text(3))}`,
    () => `//api/nodes/${node(g)}/${g.pick(ACTIONS)}`,
    () => `/api/nodes/${node(g)}/${g.pick(ACTIONS)}/`,
    () => `/api/./nodes/${node(g)}/../nodes/${node(g)}/${g.pick(ACTIONS)}`,
    () => `/API/nodes/${node(g)}/${g.pick(ACTIONS)}`,
    () => `/api/nodes/${node(g)}/${g.pick(ACTIONS)}?token=${token}`,
    () => `/${pathPart(g, g.text(6))}`,
  ];
  return g.pick(templates)();
}

function json(g: FuzzGen, depth = 0): unknown {
  const kind = g.below(depth > 3 ? 5 : 8);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return g.pick([0, -1, 1e308, 2 ** 53 + 1, 0.5, Number.MAX_SAFE_INTEGER]);
    case 2:
      return g.text(5);
    case 3:
      return g.chance(0.5);
    case 4:
      return g.pick(["memory", "file", "remote", "tcp://127.0.0.1:1", "../etc/passwd", "64M"]);
    case 5:
      return Array.from({ length: g.below(4) }, () => json(g, depth + 1));
    default: {
      const keys = [
        "name",
        "spec",
        "kind",
        "size",
        "path",
        "url",
        "storageId",
        "force",
        "now",
        "__proto__",
        "constructor",
        g.text(2),
      ];
      const entries: [string, unknown][] = [];
      for (let n = g.below(4); n > 0; n--) entries.push([g.pick(keys), json(g, depth + 1)]);
      // Own properties even for "__proto__", as JSON.parse would make them.
      return Object.fromEntries(entries);
    }
  }
}

function body(g: FuzzGen): string | "endless" | null {
  const kind = g.below(12);
  if (kind === 0) return null;
  if (kind === 1) return "";
  if (kind === 2) return "{}";
  if (kind === 3) {
    const name = g.pick(["c", "d", "a", "../x", "é", ""]);
    const spec = g.pick([
      { kind: "memory", size: g.pick([1, "64M", -1, "lots"]) },
      { kind: "remote", url: g.pick(["tcp://127.0.0.1:7003", "http://x", "unix:///x"]) },
      { kind: "file", path: g.pick(["/tmp/x.img", "", "\0"]) },
      { kind: "tape" },
    ]);
    return JSON.stringify({ name, spec });
  }
  if (kind === 4) return g.text(10); // not JSON
  if (kind === 5) return "[".repeat(g.pick([100, 10_000])) + "]".repeat(g.pick([0, 100]));
  if (kind === 6) return JSON.stringify({ pad: "x".repeat(g.pick([65 * 1024, 1024 * 1024])) });
  if (kind === 7) return "endless";
  if (kind === 8) return '{"__proto__": {"admin": true}, "constructor": {"prototype": {}}}';
  return JSON.stringify(json(g));
}

/** Case `index`: method, path, headers and body; `token` is the right token. */
export function httpCase(seed: number, index: number, token: string): HttpCase {
  const g = new FuzzGen(seed);
  // A third of the cases are near-valid control requests, so that the routes behind the token
  // (and the body parsing there) are reached often, not once in thousands.
  const near = g.chance(0.35);
  const method = near ? g.pick(["POST", "POST", "DELETE"]) : g.pick(METHODS);
  const headers: Record<string, string> = {};
  const auth = g.pick([
    null,
    null,
    `Bearer ${token}`,
    `Bearer ${token}`,
    `bearer ${token}`,
    `Bearer   ${token}`,
    `Bearer ${token}x`,
    `Bearer ${token.slice(0, -1)}`,
    `Bearer ${token.toUpperCase()}`,
    token,
    `Basic ${btoa(`dst:${token}`)}`,
    "Bearer",
    "Bearer ",
    `Bearer ${token} ${token}`,
    `Bearer ${"0".repeat(token.length)}`,
    `Token ${token}`,
  ]);
  if (auth !== null) headers["Authorization"] = auth;
  if (g.chance(0.1)) headers["X-Token"] = token;
  if (g.chance(0.1)) headers["Cookie"] = `token=${token}`;
  if (g.chance(0.5)) {
    headers["Content-Type"] = g.pick([
      "application/json",
      "text/plain",
      "multipart/form-data",
      "application/json; charset=utf-16",
    ]);
  }
  const b = method === "GET" || method === "HEAD"
    ? null
    : near && g.chance(0.5)
    ? g.pick([null, "", "{}", "endless", body(g)])
    : body(g);
  const nearPath = () =>
    method === "DELETE"
      ? `/api/nodes/${g.pick(["m", "a", "zz"])}/legs/${g.pick(["a", "b", "c", "zz", node(g)])}`
      : g.chance(0.3)
      ? `/api/nodes/${g.pick(["m", "a", "zz"])}/legs`
      : `/api/nodes/${g.pick(["a", "b", "m", node(g)])}/${g.pick(ACTIONS)}`;
  return {
    index,
    method,
    path: near ? nearPath() : path(g, token),
    headers,
    body: b,
    authorized: /^bearer\s+(\S+)\s*$/i.exec(auth ?? "")?.[1] === token,
  };
}

/**
 * An endless request body, and how much of it the server pulled: a server must stop reading
 * past its limit, never buffer it all.
 */
export function endlessBody(): { stream: ReadableStream<Uint8Array>; pulled(): number } {
  const chunk = new TextEncoder().encode(`{"pad": "${"x".repeat(16 * 1024)}`);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      // Bounded, so a server that does buffer it all fails the test rather than the machine.
      if (sent >= 64 * 1024 * 1024) {
        controller.close();
        return;
      }
      controller.enqueue(chunk);
      sent += chunk.length;
    },
  });
  return { stream, pulled: () => sent };
}
