/** Bad topology files get errors that name the bad field and what was expected. */
import assert from "node:assert/strict";
import { parseTopology, TopologyError } from "./topology.ts";

function problems(input: unknown): string[] {
  try {
    parseTopology(input);
  } catch (error) {
    assert.ok(error instanceof TopologyError, `expected TopologyError, got ${error}`);
    return [...error.problems];
  }
  assert.fail("the topology was accepted");
}

const good = {
  storage: "main",
  nodes: {
    main: { kind: "mirror", legs: ["a", "b"] },
    a: { kind: "memory", size: "64M" },
    b: { kind: "linear", children: ["b1", "b2"] },
    b1: { kind: "file", path: "/tmp/b1.img", size: "32M" },
    b2: { kind: "remote", url: "tcp://127.0.0.1:7001" },
  },
  export: { listen: ["tcp://127.0.0.1:10809"] },
};

Deno.test("topology: a good file parses, sizes become bytes", () => {
  const t = parseTopology(good);
  assert.deepEqual(t.nodes.a, { kind: "memory", size: 64 * 2 ** 20 });
});

Deno.test("topology: wrong types and unknown kinds name the field", () => {
  const p = problems({
    storage: "main",
    nodes: {
      main: { kind: "mirror", legs: "a" },
      a: { kind: "memory", size: "lots" },
      c: { kind: "raid5", legs: [] },
    },
  });
  assert.ok(p.some((x) => x.startsWith("nodes.main.legs:")), p.join("\n"));
  assert.ok(p.some((x) => x.startsWith("nodes.a.size:") && x.includes("not a size")), p.join("\n"));
  assert.ok(p.some((x) => x.startsWith("nodes.c.kind:") && x.includes("mirror")), p.join("\n"));
});

Deno.test("topology: missing nodes, cycles, shared and orphan nodes", () => {
  assert.deepEqual(problems({ ...good, storage: "nope" }).slice(0, 1), [
    'storage: no node named "nope" in nodes',
  ]);
  const missing = problems({
    ...good,
    nodes: { ...good.nodes, b: { kind: "linear", children: ["b1", "zz"] } },
  });
  assert.ok(missing.includes('nodes.b.children[1]: no node named "zz"'), missing.join("\n"));
  const cycle = problems({
    storage: "main",
    nodes: {
      main: { kind: "memory", size: 1024 },
      x: { kind: "linear", children: ["y"] },
      y: { kind: "mirror", legs: ["x"] },
    },
  });
  assert.ok(
    cycle.some((x) => x.includes("cycle: x is a child of y is a child of x")),
    cycle.join("\n"),
  );
  const shared = problems({
    ...good,
    nodes: { ...good.nodes, b: { kind: "linear", children: ["a"] } },
  });
  assert.ok(shared.some((x) => x.includes('"a" already belongs to "main"')), shared.join("\n"));
  assert.ok(
    shared.some((x) => x.includes('nodes.b1: not part of storage "main"')),
    shared.join("\n"),
  );
  const self = problems({ storage: "m", nodes: { m: { kind: "mirror", legs: ["m"] } } });
  assert.ok(self.some((x) => x.includes("cannot contain itself")), self.join("\n"));
});

Deno.test("topology: mirror legs of different declared sizes do not fit", () => {
  const p = problems({
    storage: "m",
    nodes: {
      m: { kind: "mirror", legs: ["a", "b"] },
      a: { kind: "memory", size: "1G" },
      b: { kind: "memory", size: "2G" },
    },
  });
  assert.deepEqual(p, [
    "nodes.m.legs: legs differ in size (a 1 GiB, b 2 GiB); give every leg of a mirror the same size",
  ]);
});

Deno.test("topology: unknown fields and bad URLs are refused", () => {
  const p = problems({
    ...good,
    extra: 1,
    export: { listen: ["http://x"] },
  });
  assert.ok(p.some((x) => x.startsWith("(top level)") && x.includes("extra")), p.join("\n"));
  assert.ok(p.some((x) => x.startsWith("export.listen[0]") && x.includes("tcp://")), p.join("\n"));
});

Deno.test("topology: a remote leaf's ioTimeout is a duration, named when wrong", () => {
  const withTimeout = (ioTimeout: unknown) => ({
    ...good,
    nodes: { ...good.nodes, b2: { ...good.nodes.b2, ioTimeout } },
  });
  assert.deepEqual(parseTopology(withTimeout("5s")).nodes.b2, {
    kind: "remote",
    url: "tcp://127.0.0.1:7001",
    ioTimeout: 5000,
  });
  assert.deepEqual(problems(withTimeout("5")), [
    'nodes.b2.ioTimeout: "5" is not a duration (examples: 500ms, 5s, 2m)',
  ]);
});

Deno.test("topology: parity names its bad legs, unit and chunk", () => {
  const parity = (spec: Record<string, unknown>, size = "1M") => ({
    storage: "p",
    nodes: {
      p: { kind: "parity", legs: ["a", "b", "c"], ...spec },
      a: { kind: "memory", size },
      b: { kind: "memory", size },
      c: { kind: "memory", size: "2M" },
    },
  });
  assert.deepEqual(parseTopology(parity({ unit: "128K" })).nodes.p, {
    kind: "parity",
    legs: ["a", "b", "c"],
    unit: 128 * 1024,
  });
  assert.deepEqual(problems(parity({ legs: ["a", "b"] })).slice(0, 1), [
    "nodes.p.legs: parity needs at least 3 legs (2 data and 1 parity)",
  ]);
  assert.deepEqual(problems(parity({ unit: "100K" })), [
    "nodes.p.unit: expected a power of two from 4K to 1G",
  ]);
  assert.deepEqual(problems(parity({ unit: "1M", chunkSize: "256K" })), [
    "nodes.p.chunkSize: chunkSize must be at least the stripe unit (64K unless unit says)",
  ]);
  assert.deepEqual(problems(parity({ unit: "2M" })), [
    "nodes.p.legs: every parity leg must hold at least one stripe unit (2 MiB): a 1 MiB, " +
    "b 1 MiB; use bigger legs or a smaller unit",
  ]);
});

Deno.test("topology: a parity's declared size is K units per row of its smallest leg", () => {
  // A mirror of a parity (2 × 1M) and a 2M leaf fits; of a parity and a 3M leaf does not.
  const mirrorOf = (other: string) => ({
    storage: "m",
    nodes: {
      m: { kind: "mirror", legs: ["p", "z"] },
      p: { kind: "parity", legs: ["a", "b", "c"] },
      a: { kind: "memory", size: "1M" },
      b: { kind: "memory", size: "1M" },
      c: { kind: "memory", size: "1M" },
      z: { kind: "memory", size: other },
    },
  });
  parseTopology(mirrorOf("2M"));
  assert.deepEqual(problems(mirrorOf("3M")), [
    "nodes.m.legs: legs differ in size (p 2 MiB, z 3 MiB); give every leg of a mirror the same size",
  ]);
});
