/**
 * The datagram service (UDP): unreliable, unordered messages between bound endpoints.
 * Implemented by `NodeDatagram` (node:dgram) and `SimNet`.
 *
 * @since 0.1.0
 */
import { Context, Effect, Schema, type Scope, type Stream } from "effect"
import * as Address from "./Address.ts"
import { type DatagramError, ListenError } from "./TransportError.ts"

/** @since 0.1.0 @category models */
export interface Received {
  readonly from: Address.Udp
  readonly bytes: Uint8Array
}

/** @since 0.1.0 @category models */
export interface Endpoint {
  /** The bound address, with the actual port when port 0 was asked for. */
  readonly address: Address.Udp
  /** Sends one datagram. Delivery is not guaranteed; a datagram may be lost or reordered. */
  readonly send: (to: Address.Udp, bytes: Uint8Array) => Effect.Effect<void, DatagramError>
  /**
   * Received datagrams. A bounded buffer sits in front of a slow reader: past it, new
   * datagrams are dropped, as the kernel would. Ends when the endpoint's scope closes.
   */
  readonly messages: Stream.Stream<Received>
  /**
   * Destinations found closed: the kernel answered a datagram sent there with an ICMP port
   * unreachable (nothing listens on that port: a process that died, its host still up). Only
   * on an endpoint bound with `reportUnreachable`; a destination that is partitioned away,
   * stopped or lost sends no such answer, so silence proves nothing. Reports that come faster
   * than they are read are dropped (one is as good as many). Ends with `messages`.
   */
  readonly unreachable?: Stream.Stream<Address.Udp>
  /**
   * Sets up ahead of time what the first datagram to `to` needs: on an endpoint bound with
   * `reportUnreachable`, the socket connected to `to`. A program that will turn to `to` at a
   * busy moment (a failover) pays for the socket before, not then. Absent: nothing to set up.
   */
  readonly prepare?: (to: Address.Udp) => Effect.Effect<void>
}

/**
 * The socket's kernel buffers (SO_RCVBUF, SO_SNDBUF), for a socket that must absorb a burst:
 * a datagram that arrives while the receive buffer is full is dropped by the kernel. Linux
 * doubles the value asked (the other half is its bookkeeping), after capping it at
 * `net.core.rmem_max` / `net.core.wmem_max` (208 KiB on many systems: raise them with sysctl
 * for more). Unset: the system's default (`net.core.rmem_default`).
 *
 * @since 0.1.0
 * @category models
 */
export interface BindOptions {
  /** The receive buffer asked of the kernel (SO_RCVBUF), in bytes. */
  readonly receiveBufferBytes?: number
  /** The send buffer asked of the kernel (SO_SNDBUF), in bytes. */
  readonly sendBufferBytes?: number
  /**
   * Report closed destinations on `Endpoint.unreachable`. Linux tells a UDP socket of an
   * ICMP port unreachable only when the socket is connected to that destination, so each
   * destination (up to `unreachablePeersMax`; past them, from the bound socket, unreported)
   * gets a socket of its own, connected to it, bound on the same host with a port of its
   * own: the datagrams it sends leave from that port, and what the destination answers
   * there arrives on `messages` with the rest. For a peer that answers its sender's address
   * (a client of a server), not for one that knows this endpoint by its bound address.
   */
  readonly reportUnreachable?: boolean
}

/**
 * Destinations an endpoint bound with `reportUnreachable` connects a socket to, at most.
 *
 * @since 0.1.0
 * @category constants
 */
export const unreachablePeersMax = 64

const BufferBytes = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 2 ** 31 - 1 }))
const BindOptionsSchema = Schema.Struct({
  receiveBufferBytes: Schema.optionalKey(BufferBytes),
  sendBufferBytes: Schema.optionalKey(BufferBytes),
  reportUnreachable: Schema.optionalKey(Schema.Boolean),
})

/**
 * `options` checked: a buffer size that is not a positive integer (below 2^31) fails with
 * `ListenError` `Other`, naming the option.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeBindOptions = (
  address: Address.Udp,
  options: BindOptions | undefined,
): Effect.Effect<BindOptions, ListenError> =>
  Schema.decodeUnknownEffect(BindOptionsSchema)(options ?? {}).pipe(
    Effect.mapError(
      (error) =>
        new ListenError({
          address: Address.format(address),
          reason: "Other",
          detail: `bad bind options: ${error.message}`,
        }),
    ),
  )

/** @since 0.1.0 @category services */
export class Datagram extends Context.Service<
  Datagram,
  {
    /**
     * Binds a UDP address exclusively (a specific loopback address such as 127.0.0.2 works),
     * with the kernel buffers `options` asks for.
     */
    readonly bind: (
      address: Address.Udp,
      options?: BindOptions,
    ) => Effect.Effect<Endpoint, ListenError, Scope.Scope>
  }
>()("@understudy/transport/Datagram") {}
