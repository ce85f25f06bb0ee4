/**
 * The datagram service (UDP): unreliable, unordered messages between bound endpoints.
 * Implemented by `NodeDatagram` (node:dgram) and `SimNet`.
 *
 * @since 0.1.0
 */
import { Context, type Effect, type Scope, type Stream } from "effect"
import type { Udp } from "./Address.ts"
import type { DatagramError, ListenError } from "./TransportError.ts"

/** @since 0.1.0 @category models */
export interface Received {
  readonly from: Udp
  readonly bytes: Uint8Array
}

/** @since 0.1.0 @category models */
export interface Endpoint {
  /** The bound address, with the actual port when port 0 was asked for. */
  readonly address: Udp
  /** Sends one datagram. Delivery is not guaranteed; a datagram may be lost or reordered. */
  readonly send: (to: Udp, bytes: Uint8Array) => Effect.Effect<void, DatagramError>
  /**
   * Received datagrams. A bounded buffer sits in front of a slow reader: past it, new
   * datagrams are dropped, as the kernel would. Ends when the endpoint's scope closes.
   */
  readonly messages: Stream.Stream<Received>
}

/** @since 0.1.0 @category services */
export class Datagram extends Context.Service<
  Datagram,
  {
    /** Binds a UDP address exclusively (a specific loopback address such as 127.0.0.2 works). */
    readonly bind: (address: Udp) => Effect.Effect<Endpoint, ListenError, Scope.Scope>
  }
>()("@understudy/transport/Datagram") {}
