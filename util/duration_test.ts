/** Durations for flags and topology files: units required, bounded, mistakes said plainly. */
import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("duration: ms, s and m; bad text says what a duration looks like", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("5s"), 5000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("0s"), 0);
  for (const bad of ["5", "-1s", "5h", "s", "", "1e3ms"]) {
    assert.throws(() => parseDuration(bad), /is not a duration \(examples: 500ms, 5s, 2m\)/, bad);
  }
  assert.throws(() => parseDuration("99999m"), /too long/);
  assert.equal(formatDuration(5000), "5s");
  assert.equal(formatDuration(250), "250ms");
});
