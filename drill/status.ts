/**
 * Watching a drill through the status endpoints of its serves: each is polled every 100 ms, every
 * sample is kept (for detect and recover times measured afterwards), and each change of a
 * mirror's state or of one of its legs is reported as it happens. Control actions go through the
 * same endpoint with the serve's bearer token. In namespaces the endpoint is reached with curl
 * inside the serve's namespace (it listens on that namespace's loopback).
 */

export interface LegSample {
  readonly name: string;
  readonly state: string;
  readonly reason?: string;
  readonly outOfSyncBytes?: number;
  readonly resyncedBytes?: number;
  readonly copiedBytes?: number;
}

export interface Sample {
  /** Milliseconds since the drill began. */
  readonly t: number;
  readonly serve: string;
  /** Undefined when the endpoint did not answer. */
  readonly state?: string;
  readonly legs: readonly LegSample[];
  /** In a cluster: "active" or "fenced" (a standby serves no status). */
  readonly role?: string;
  /** The exporter's owner epoch, when it reports one. */
  readonly ownerEpoch?: number;
}

/** Where a serve's status endpoint is, and how to reach it. */
export interface Endpoint {
  readonly serve: string;
  /** Base URL (no trailing slash); undefined while the serve is down. */
  url(): string | undefined;
  /** The namespace to reach it from, if any. */
  readonly ns?: string;
}

async function curl(ns: string, args: string[]): Promise<{ ok: boolean; body: string }> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, "curl", "-s", "-m", "2", "-w", "\n%{http_code}", ...args],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const cut = text.lastIndexOf("\n");
  const code = Number(text.slice(cut + 1));
  return { ok: out.success && code >= 200 && code < 300, body: text.slice(0, cut) };
}

/** GET /api/tree; undefined when the serve does not answer. */
export async function fetchTree(endpoint: Endpoint): Promise<unknown> {
  const url = endpoint.url();
  if (url === undefined) return undefined;
  try {
    if (endpoint.ns !== undefined) {
      const res = await curl(endpoint.ns, [`${url}/api/tree`]);
      return res.ok ? JSON.parse(res.body) : undefined;
    }
    const res = await fetch(`${url}/api/tree`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    return await res.json();
  } catch {
    return undefined;
  }
}

/** POST a control action (suspend, resume, ...) for `node`; throws with the answer on refusal. */
export async function control(
  endpoint: Endpoint,
  token: string,
  node: string,
  action: string,
): Promise<string> {
  const url = endpoint.url();
  if (url === undefined) throw new Error(`${endpoint.serve} is not running`);
  const target = `${url}/api/nodes/${encodeURIComponent(node)}/${action}`;
  if (endpoint.ns !== undefined) {
    const res = await curl(endpoint.ns, [
      "-X",
      "POST",
      "-H",
      `Authorization: Bearer ${token}`,
      "-H",
      "Content-Type: application/json",
      "-d",
      "{}",
      target,
    ]);
    if (!res.ok) throw new Error(`${action} ${node}: ${res.body}`);
    return res.body;
  }
  const res = await fetch(target, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(10_000),
  });
  const body = await res.text();
  if (!res.ok) throw new Error(`${action} ${node}: HTTP ${res.status} ${body}`);
  return body;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown) => typeof v === "number" ? v : undefined;

/** The mirror's state and its legs, from a /api/tree answer. */
export function sampleOf(t: number, serve: string, body: unknown): Sample {
  const tree = isRecord(body) && isRecord(body.tree) ? body.tree : undefined;
  if (tree === undefined) return { t, serve, legs: [] };
  const detail = isRecord(tree.detail) ? tree.detail : {};
  const legs = Array.isArray(detail.legs) ? detail.legs.filter(isRecord) : [];
  const cluster = isRecord(detail.cluster) ? detail.cluster : undefined;
  const epoch = num(detail.ownerEpoch);
  return {
    t,
    serve,
    state: String(tree.state),
    ...(typeof cluster?.role === "string" ? { role: cluster.role } : {}),
    ...(epoch === undefined ? {} : { ownerEpoch: epoch }),
    legs: legs.map((l) => {
      const leg: Record<string, unknown> = { name: String(l.name), state: String(l.state) };
      if (typeof l.reason === "string") leg.reason = l.reason;
      for (const key of ["outOfSyncBytes", "resyncedBytes", "copiedBytes"]) {
        const v = num(l[key]);
        if (v !== undefined) leg[key] = v;
      }
      return leg as unknown as LegSample;
    }),
  };
}

/** One line for a sample: "degraded · leg0 in-sync · leg1 out (link down)". */
export function describe(sample: Sample): string {
  if (sample.state === undefined) return "no answer";
  const legs = sample.legs.map((l) =>
    `${l.name} ${l.state}${l.reason === undefined ? "" : ` (${l.reason})`}`
  );
  const role = sample.role === undefined ? [] : [`${sample.role} epoch ${sample.ownerEpoch}`];
  return [sample.state, ...role, ...legs].join(" · ");
}

/** The part of a sample whose change is worth a timeline line. */
function shape(sample: Sample): string {
  return [
    sample.state ?? "down",
    sample.role ?? "",
    ...sample.legs.map((l) => `${l.name}=${l.state}`),
  ].join(" ");
}

export class StatusWatch {
  readonly samples: Sample[] = [];
  readonly #latest = new Map<string, Sample>();
  #running = true;
  #loop: Promise<void> | undefined;
  #wake: (() => void)[] = [];

  constructor(
    readonly endpoints: readonly Endpoint[],
    readonly now: () => number,
    readonly onChange: (sample: Sample) => void,
  ) {}

  start(): void {
    this.#loop = this.#poll();
  }

  latest(serve: string): Sample | undefined {
    return this.#latest.get(serve);
  }

  async #poll(): Promise<void> {
    while (this.#running) {
      await Promise.all(this.endpoints.map(async (endpoint) => {
        const body = await fetchTree(endpoint);
        const sample = sampleOf(this.now(), endpoint.serve, body);
        const before = this.#latest.get(endpoint.serve);
        this.#latest.set(endpoint.serve, sample);
        this.samples.push(sample);
        if (before === undefined || shape(before) !== shape(sample)) this.onChange(sample);
      }));
      for (const wake of this.#wake.splice(0)) wake();
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Resolves once `ok` holds after a poll that began after this call (never on a sample older
   * than the step that waits); rejects after `timeoutMs`.
   */
  async until(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const end = this.now() + timeoutMs;
    await this.#nextPoll();
    await this.#nextPoll();
    while (!ok()) {
      if (this.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((r) => this.#wake.push(r));
    }
  }

  #nextPoll(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise<void>((r) => this.#wake.push(r));
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    for (const wake of this.#wake.splice(0)) wake();
  }
}
