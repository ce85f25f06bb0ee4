/**
 * The stream transport service: listen for and open framed connections. Implemented by
 * `NodeTransport` (real sockets) and `SimNet` (a deterministic in-memory network), so every
 * mechanism runs unchanged on both.
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Scope, type Stream } from "effect"
import type { StreamAddress } from "./Address.ts"
import type { Connection } from "./Connection.ts"
import type { ConnectionOptions } from "./Options.ts"
import type { ConnectError, HandshakeError, ListenError } from "./TransportError.ts"

/** @since 0.1.0 @category models */
export interface Listener<A> {
  /** The bound address, with the actual port when port 0 was asked for. */
  readonly address: StreamAddress
  /**
   * Connections that completed the handshake. Each lives until it closes or the listener's
   * scope closes. A peer that fails the handshake never appears here (it is logged).
   */
  readonly connections: Stream.Stream<Connection<A>>
  /**
   * Stops accepting and frees the address at once, so another listener may bind it; the
   * connections already accepted live on until they close or the listener's scope closes.
   * Idempotent. (A process that hands its address over first, then says goodbye on its
   * open connections.)
   */
  readonly unbind: Effect.Effect<void>
}

/**
 * @example
 * ```ts
 * import { Effect, Schema, Stream } from "effect"
 * import { Codec, Transport, Address } from "@understudy/transport"
 *
 * const echo = Effect.gen(function* () {
 *   const transport = yield* Transport.Transport
 *   const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), { codec: Codec.bytes })
 *   yield* Stream.runForEach(listener.connections, (conn) =>
 *     Effect.forkScoped(Stream.runForEach(conn.messages, conn.send)))
 * })
 * ```
 * @since 0.1.0
 * @category services
 */
export class Transport extends Context.Service<
  Transport,
  {
    /** Binds the address exclusively and accepts connections until the scope closes. */
    readonly listen: <A>(
      address: StreamAddress,
      options: ConnectionOptions<A>,
    ) => Effect.Effect<Listener<A>, ListenError, Scope.Scope>
    /** Opens a connection and completes the handshake; closed when the scope closes. */
    readonly connect: <A>(
      address: StreamAddress,
      options: ConnectionOptions<A>,
    ) => Effect.Effect<Connection<A>, ConnectError | HandshakeError, Scope.Scope>
  }
>()("@understudy/transport/Transport") {}
