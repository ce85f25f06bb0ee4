/**
 * The `Datagram` service over node:dgram (UDP on IPv4 and IPv6).
 *
 * @since 0.1.0
 */
import * as dgram from "node:dgram"
import * as net from "node:net"
import { type Cause, Deferred, Effect, Layer, Metric, Queue, Stream } from "effect"
import * as Address from "./Address.ts"
import {
  type BindOptions,
  Datagram,
  decodeBindOptions,
  type Endpoint,
  type Received,
  unreachablePeersMax,
} from "./Datagram.ts"
import * as NodeLink from "./internal/nodeLink.ts"
import * as Metrics from "./Metrics.ts"
import { DatagramError, ListenError } from "./TransportError.ts"

/** Datagrams received but not yet read; past this, new ones are dropped, as the kernel would. */
const receiveQueueCapacity = 4096

const droppedQueueFull = Metric.withAttributes(Metrics.datagramsDropped, { reason: "queue-full" })
/** Unreachable reports not yet read; past this, new ones are dropped (they repeat). */
const unreachableQueueCapacity = 256

const socketType = (host: string): "udp4" | "udp6" => (net.isIPv6(host) ? "udp6" : "udp4")

/**
 * A socket bound on `host` (any port) and connected to `to`: the kernel reports an ICMP port
 * unreachable from `to` to it (as `ECONNREFUSED`), which it does not for an unconnected one.
 * Undefined when it cannot be set up: the datagram then leaves from the bound socket.
 */
const connectSocket = (
  host: string,
  to: Address.Udp,
  onMessage: (bytes: Uint8Array, info: dgram.RemoteInfo) => void,
  onError: (error: Error) => void,
): Effect.Effect<dgram.Socket | undefined> =>
  Effect.callback<dgram.Socket | undefined>((resume) => {
    const socket = dgram.createSocket({ type: socketType(host), reuseAddr: false })
    const failed = () => {
      socket.close()
      resume(Effect.succeed(undefined))
    }
    socket.once("error", failed)
    socket.once("connect", () => {
      socket.off("error", failed)
      socket.on("error", onError)
      socket.on("message", onMessage)
      resume(Effect.succeed(socket))
    })
    socket.bind({ address: host, port: 0, exclusive: true }, () => socket.connect(to.port, to.host))
  })

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
      type: socketType(address.host),
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
    const unreachable = yield* Queue.dropping<Address.Udp, Cause.Done>(unreachableQueueCapacity)
    // With `reportUnreachable`: the socket connected to each destination, made on first use.
    const connected = new Map<string, Deferred.Deferred<dgram.Socket | undefined>>()
    let closed = false
    const closeConnected = Effect.suspend(() =>
      Effect.forEach(
        [...connected.values()],
        (made) =>
          Deferred.await(made).pipe(
            Effect.flatMap((socket) =>
              socket === undefined
                ? Effect.void
                : Effect.callback<void>((resume) => {
                    socket.close(() => resume(Effect.void))
                  }),
            ),
          ),
        { discard: true },
      ),
    )
    const socket = yield* Effect.acquireRelease(acquireSocket(address, checked), (socket) =>
      Effect.callback<void>((resume) => {
        closed = true
        socket.close(() => resume(Effect.void))
      }).pipe(
        Effect.andThen(closeConnected),
        Effect.andThen(Queue.end(received)),
        Effect.andThen(Queue.end(unreachable)),
      ),
    )
    // After binding, errors are about single datagrams (ICMP unreachable and the like):
    // `send` reports its own; the rest must not crash the process.
    const context = yield* Effect.context<never>()
    const logError = (error: Error) =>
      Effect.runForkWith(context)(
        Effect.logDebug("udp socket error").pipe(
          Effect.annotateLogs({ address: formatted, error: NodeLink.describeError(error) }),
        ),
      )
    socket.on("error", logError)
    const onMessage = (bytes: Uint8Array, info: dgram.RemoteInfo) => {
      if (Queue.offerUnsafe(received, { from: Address.udp(info.address, info.port), bytes })) {
        Metrics.datagramsReceived.updateUnsafe(1, context)
      } else droppedQueueFull.updateUnsafe(1, context)
    }
    socket.on("message", onMessage)
    const bound = socket.address()
    const refused = (error: unknown) => NodeLink.errorCode(error) === "ECONNREFUSED"

    /** The socket to send to `to` from: its connected one when reporting, else the bound one. */
    const socketFor = (
      to: Address.Udp,
    ): Effect.Effect<{ socket: dgram.Socket; connected: boolean }> =>
      Effect.gen(function* () {
        if (checked.reportUnreachable !== true || closed) return { socket, connected: false }
        const key = `${to.host}:${to.port}`
        let made = connected.get(key)
        if (made === undefined) {
          if (connected.size >= unreachablePeersMax) return { socket, connected: false }
          const deferred = Deferred.makeUnsafe<dgram.Socket | undefined>()
          made = deferred
          connected.set(key, deferred)
          // Uninterruptible: the scope's release waits for every socket made to be done.
          yield* connectSocket(bound.address, to, onMessage, (error) => {
            if (refused(error)) Queue.offerUnsafe(unreachable, to)
            else logError(error)
          }).pipe(
            Effect.flatMap((peer) => {
              if (closed) peer?.close()
              return Deferred.succeed(deferred, closed ? undefined : peer)
            }),
            Effect.uninterruptible,
          )
        }
        const peer = yield* Deferred.await(made)
        return peer === undefined ? { socket, connected: false } : { socket: peer, connected: true }
      })

    const endpoint: Endpoint = {
      address: Address.udp(bound.address, bound.port),
      send: (to, bytes) =>
        Effect.flatMap(socketFor(to), ({ socket, connected }) =>
          Effect.callback<void, DatagramError>((resume) => {
            const sent = (error: Error | null) => {
              if (error === null || error === undefined) {
                Metrics.datagramsSent.updateUnsafe(1, context)
              }
              // A refusal of an earlier datagram, reported on this send: a report, not a failure.
              if (connected && refused(error)) {
                Queue.offerUnsafe(unreachable, to)
                return resume(Effect.void)
              }
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
            }
            try {
              if (connected) socket.send(bytes, sent)
              else socket.send(bytes, to.port, to.host, sent)
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
        ),
      messages: Stream.fromQueue(received),
      ...(checked.reportUnreachable === true
        ? {
            unreachable: Stream.fromQueue(unreachable),
            prepare: (to: Address.Udp) => Effect.asVoid(socketFor(to)),
          }
        : {}),
    }
    return endpoint
  })

/**
 * Builds the node:dgram `Datagram` service. Binding is exclusive: a second bind of the same
 * address and port fails with `ListenError` `AddressInUse`. `bind`'s `receiveBufferBytes` /
 * `sendBufferBytes` set SO_RCVBUF / SO_SNDBUF; `reportUnreachable` connects a socket to each
 * destination to hear of its ICMP port unreachable (see `Datagram.BindOptions`).
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
