/**
 * Helpers for the endpoint tests: advancing the test clock until a fiber is done, an echo
 * service, and message builders (waiting on a real process is testkit's `Eventually`).
 */
import { Address, type SimNet, type TransportError } from "@understudy/transport"
import { Effect, Fiber, type Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as Endpoint from "../../src/Endpoint.ts"

/**
 * Forks `effect` and advances the test clock `stepMs` at a time until it is done, at most
 * `limitMs` of simulated time; then joins it (a fiber still running is interrupted and the
 * join fails, so a test never hangs).
 */
export const within = <A, E>(
  limitMs: number,
  effect: Effect.Effect<A, E, Scope.Scope>,
  stepMs = 10,
) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkScoped(effect)
    for (
      let elapsed = 0;
      elapsed < limitMs && fiber.pollUnsafe() === undefined;
      elapsed += stepMs
    ) {
      yield* TestClock.adjust(stepMs)
    }
    if (fiber.pollUnsafe() === undefined) {
      yield* Fiber.interrupt(fiber)
      return yield* Effect.die(new Error(`not done within ${limitMs} ms of simulated time`))
    }
    return yield* Fiber.join(fiber)
  })

/**
 * The outside peer of a simulated cluster: an endpoint at `host` (SCTP port 5000, seed 99)
 * on `net`, its association with `to` up within 10 s of simulated time.
 */
export const connectPeer = (
  net: SimNet.SimNet,
  host: string,
  config: Endpoint.AssociationOptions,
  to: Endpoint.ConnectOptions,
): Effect.Effect<
  Endpoint.AssociationHandle,
  TransportError.ListenError | Endpoint.EndpointConfigError | Endpoint.AssociationConnectError,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const peer = yield* Endpoint.make({
      bind: Address.udp(host, to.udpPort),
      port: 5000,
      config,
      seed: 99,
    }).pipe(Effect.provide(net.layer(host)))
    return yield* within(10_000, peer.connect(to))
  })

/** Advances the test clock by `ms`, `stepMs` at a time (timers re-arm relative to now). */
export const advance = (ms: number, stepMs = 10) =>
  Effect.gen(function* () {
    for (let elapsed = 0; elapsed < ms; elapsed += stepMs) yield* TestClock.adjust(stepMs)
  })

/**
 * Echoes every message of every accepted association back on its stream, PPID and
 * ordering; returns the associations accepted so far (it consumes `accept`).
 */
export const echoService = (endpoint: Endpoint.Endpoint) =>
  Effect.gen(function* () {
    const accepted: Array<Endpoint.AssociationHandle> = []
    yield* endpoint.accept.pipe(
      Stream.runForEach((association) => {
        accepted.push(association)
        return Effect.forkScoped(
          association.messages.pipe(
            Stream.runForEach((message) =>
              association
                .send(message.stream, message.ppid, message.data, { unordered: message.unordered })
                .pipe(Effect.ignore),
            ),
          ),
        )
      }),
      Effect.forkScoped,
    )
    return accepted
  })

/** Message `index` of a test run: its bytes name it, and its size varies (some fragment). */
export const payload = (index: number, size: number): Uint8Array => {
  const bytes = new Uint8Array(size)
  const view = new DataView(bytes.buffer)
  if (size >= 4) view.setUint32(0, index)
  for (let i = 4; i < size; i++) bytes[i] = (index + i) & 0xff
  return bytes
}

export const indexOf = (bytes: Uint8Array): number =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)

export const text = (value: string): Uint8Array => new TextEncoder().encode(value)
export const fromText = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)
