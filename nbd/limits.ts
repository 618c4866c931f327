/**
 * The limits an NBD server puts on its clients, their defaults and their checks, in one place
 * for the server and for the command-line flags that set them.
 */

export interface NbdLimits {
  /** Most requests read and not yet answered on the socket, per connection. */
  readonly maxInFlight: number;
  /** Most payload bytes those requests may hold, per connection. */
  readonly maxInFlightBytes: number;
  /** Most payload bytes all connections' requests may hold together (each may go 1 MiB over). */
  readonly maxServerInFlightBytes: number;
  /** Most open connections; more are closed at once. */
  readonly maxConnections: number;
  /** Most connections still in the handshake; more are closed at once. */
  readonly maxHandshakes: number;
  /** Longest a client may take to finish the handshake. */
  readonly handshakeTimeoutMs: number;
  /** A connection with nothing in flight that sends nothing this long is closed; 0 is off. */
  readonly idleTimeoutMs: number;
  /** A client that takes none of its replies this long is dropped. */
  readonly stallTimeoutMs: number;
}

export const NBD_DEFAULTS: NbdLimits = {
  maxInFlight: 64,
  maxInFlightBytes: 32 * 1024 * 1024,
  maxServerInFlightBytes: 256 * 1024 * 1024,
  maxConnections: 256,
  maxHandshakes: 64,
  handshakeTimeoutMs: 30_000,
  idleTimeoutMs: 0,
  stallTimeoutMs: 60_000,
};

/** Longest timeout accepted: a day. */
export const MAX_TIMEOUT_MS = 86_400_000;

/** The defaults overlaid with `given`; a RangeError names the first limit out of range. */
export function resolveLimits(given: Partial<NbdLimits>): NbdLimits {
  const limits = { ...NBD_DEFAULTS } as Record<keyof NbdLimits, number>;
  for (const name of Object.keys(NBD_DEFAULTS) as (keyof NbdLimits)[]) {
    const value = given[name];
    if (value !== undefined) limits[name] = value;
  }
  const whole = (name: keyof NbdLimits, min: number, max: number) => {
    const value = limits[name];
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(`NBD limit ${name} must be a whole number from ${min} to ${max}`);
    }
  };
  whole("maxInFlight", 1, 65_536);
  whole("maxInFlightBytes", 1, 2 ** 40);
  whole("maxServerInFlightBytes", 1, 2 ** 40);
  whole("maxConnections", 1, 1_000_000);
  whole("maxHandshakes", 1, limits.maxConnections);
  whole("handshakeTimeoutMs", 1, MAX_TIMEOUT_MS);
  whole("idleTimeoutMs", 0, MAX_TIMEOUT_MS);
  whole("stallTimeoutMs", 1, MAX_TIMEOUT_MS);
  return limits;
}
