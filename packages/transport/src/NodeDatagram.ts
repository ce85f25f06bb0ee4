/**
 * The `Datagram` service over node:dgram (UDP on IPv4 and IPv6).
 *
 * @since 0.1.0
 */
import * as dgram from "node:dgram"
import * as net from "node:net"
import { type Cause, Effect, Layer, Queue, Stream } from "effect"
import * as Address from "./Address.ts"
import {
  type BindOptions,
  Datagram,
  decodeBindOptions,
  type Endpoint,
  type Received,
} from "./Datagram.ts"
import * as NodeLink from "./internal/nodeLink.ts"
import { DatagramError, ListenError } from "./TransportError.ts"

/** Datagrams received but not yet read; past this, new ones are dropped, as the kernel would. */
const receiveQueueCapacity = 4096

/**
 * Binds exclusively (no SO_REUSEADDR, no sharing with cluster workers); node sets the kernel
 * buffers asked for once bound.
 */
const acquireSocket = (
  address: Address.Udp,
  options: BindOptions,
): Effect.Effect<dgram.Socket, ListenError> =>
  Effect.callback<dgram.Socket, ListenError>((resume) => {
    const socket = dgram.createSocket({
      type: net.isIPv6(address.host) ? "udp6" : "udp4",
      reuseAddr: false,
      ...(options.receiveBufferBytes === undefined
        ? {}
        : { recvBufferSize: options.receiveBufferBytes }),
      ...(options.sendBufferBytes === undefined ? {} : { sendBufferSize: options.sendBufferBytes }),
    })
    const onError = (error: Error) => {
      socket.close()
      resume(
        Effect.fail(
          new ListenError({
            address: Address.format(address),
            reason: NodeLink.listenReason(NodeLink.errorCode(error)),
            detail: NodeLink.describeError(error),
          }),
        ),
      )
    }
    socket.once("error", onError)
    socket.once("listening", () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
    socket.bind({ address: address.host, port: address.port, exclusive: true })
    return Effect.sync(() => socket.close())
  })

const bind = (address: Address.Udp, options?: BindOptions) =>
  Effect.gen(function* () {
    const formatted = Address.format(address)
    const checked = yield* decodeBindOptions(address, options)
    const received = yield* Queue.dropping<Received, Cause.Done>(receiveQueueCapacity)
    const socket = yield* Effect.acquireRelease(acquireSocket(address, checked), (socket) =>
      Effect.callback<void>((resume) => {
        socket.close(() => resume(Effect.void))
      }).pipe(Effect.andThen(Queue.end(received))),
    )
    // After binding, errors are about single datagrams (ICMP unreachable and the like):
    // `send` reports its own; the rest must not crash the process.
    const context = yield* Effect.context<never>()
    socket.on("error", (error) =>
      Effect.runForkWith(context)(
        Effect.logDebug("udp socket error").pipe(
          Effect.annotateLogs({ address: formatted, error: NodeLink.describeError(error) }),
        ),
      ),
    )
    socket.on("message", (bytes, info) => {
      Queue.offerUnsafe(received, { from: Address.udp(info.address, info.port), bytes })
    })
    const bound = socket.address()
    const endpoint: Endpoint = {
      address: Address.udp(bound.address, bound.port),
      send: (to, bytes) =>
        Effect.callback<void, DatagramError>((resume) => {
          try {
            socket.send(bytes, to.port, to.host, (error) => {
              resume(
                error === null || error === undefined
                  ? Effect.void
                  : Effect.fail(
                      new DatagramError({
                        address: Address.format(to),
                        detail: NodeLink.describeError(error),
                      }),
                    ),
              )
            })
          } catch (error) {
            // A closed socket (ERR_SOCKET_DGRAM_NOT_RUNNING) throws synchronously.
            resume(
              Effect.fail(
                new DatagramError({
                  address: Address.format(to),
                  detail: NodeLink.describeError(error),
                }),
              ),
            )
          }
        }),
      messages: Stream.fromQueue(received),
    }
    return endpoint
  })

/**
 * Builds the node:dgram `Datagram` service. Binding is exclusive: a second bind of the same
 * address and port fails with `ListenError` `AddressInUse`. `bind`'s `receiveBufferBytes` /
 * `sendBufferBytes` set SO_RCVBUF / SO_SNDBUF (see `Datagram.BindOptions`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Datagram["Service"]> = Effect.succeed(Datagram.of({ bind }))

/**
 * `Datagram` over node:dgram.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Address, Datagram, NodeDatagram } from "@understudy/transport"
 *
 * const program = Effect.gen(function* () {
 *   const datagram = yield* Datagram.Datagram
 *   const endpoint = yield* datagram.bind(Address.udp("127.0.0.2", 0))
 *   yield* endpoint.send(endpoint.address, new Uint8Array([1]))
 *   return yield* Stream.runHead(endpoint.messages)
 * }).pipe(Effect.scoped, Effect.provide(NodeDatagram.layer))
 * ```
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Datagram> = Layer.effect(Datagram, make)
