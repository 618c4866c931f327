/** Waiting for SIGTERM or SIGINT, the way every long-running `dst` command stops gracefully. */

/** Resolves with the first of SIGTERM or SIGINT; the listeners are removed by `dispose`. */
export function untilStopSignal(): { signal: Promise<Deno.Signal>; dispose(): void } {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  const handlers = (["SIGTERM", "SIGINT"] as const).map((signal) => {
    const handler = () => resolve(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  return {
    signal: promise,
    dispose: () => {
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}
