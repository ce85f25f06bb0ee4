/**
 * A bundle's UDP data flows: one node:dgram socket, datagrams demultiplexed by the peer's
 * address into flows that look like the transport's connections (`send`, `messages`,
 * `close`), so a transfer runs on them as on TCP. UDP neither orders nor delivers for
 * sure: the sender goes back to the acknowledgement when it stalls, the receiver drops
 * what comes after a gap. Every datagram is one session frame followed by a 16-byte
 * HMAC-SHA256 under the session's secret (an `Attach` is checked by its own proof first).
 *
 * Multicast: a flow may send to a group (the server, `sendTo`), and a socket may join a
 * group on an interface (the client), with the group's traffic looped back to the host.
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import * as dgram from "node:dgram"
import { TransportError } from "@understudy/transport"
import { type Cause, Effect, Queue, type Scope, Stream } from "effect"
import * as Message from "../Message.ts"

export interface Peer {
  readonly host: string
  readonly port: number
}

const macBytes = 16
/** Frames a flow holds unread; beyond, datagrams are dropped (UDP's own loss). */
const inboxMax = 4_096

const mac = (key: Uint8Array, frame: Uint8Array) =>
  createHmac("sha256", key).update(frame).digest().subarray(0, macBytes)

/** One frame's bytes with its MAC. */
export const seal = (key: Uint8Array, message: Message.Message): Uint8Array => {
  const encoded = Message.codec.encode(message)
  if (encoded._tag === "Failure") throw new Error(encoded.failure.message)
  const frame = encoded.success
  const out = new Uint8Array(frame.length + macBytes)
  out.set(frame)
  out.set(mac(key, frame), frame.length)
  return out
}

/** The frame of a datagram, or undefined when it does not decode. */
export const peek = (datagram: Uint8Array): Message.Message | undefined => {
  if (datagram.length <= macBytes) return undefined
  const decoded = Message.codec.decode(datagram.subarray(0, datagram.length - macBytes))
  return decoded._tag === "Success" ? decoded.success : undefined
}

export const verify = (key: Uint8Array, datagram: Uint8Array): boolean => {
  if (datagram.length <= macBytes) return false
  const frame = datagram.subarray(0, datagram.length - macBytes)
  return timingSafeEqual(mac(key, frame), datagram.subarray(datagram.length - macBytes))
}

/** One flow: what a transfer needs of a connection. */
export interface Flow {
  readonly send: (message: Message.Message) => Effect.Effect<void>
  /** Ends at `close`. */
  readonly messages: Stream.Stream<Message.Message>
  readonly close: Effect.Effect<void>
}

export interface Socket {
  readonly address: Peer
  /** A flow with `peer`, under `key`; sends to `sendTo` (a group) when given. */
  readonly flow: (
    peer: Peer,
    key: Uint8Array,
    sendTo?: Peer,
  ) => Effect.Effect<Flow, never, Scope.Scope>
  /** Datagrams from peers with no flow (a server's `Attach`es), with their sender. */
  readonly unclaimed: Stream.Stream<{ readonly from: Peer; readonly datagram: Uint8Array }>
}

const key = (peer: Peer) => `${peer.host}:${peer.port}`

/**
 * Binds a UDP socket until the scope closes. `join`: a multicast group to receive, on the
 * interface `multicastInterface` (bind the group's port). `multicastInterface` also sets
 * where this socket's multicast goes out, looped back to this host.
 */
export const bind = (options: {
  readonly host: string
  readonly port: number
  readonly multicastInterface?: string
  readonly join?: Peer
}): Effect.Effect<Socket, TransportError.ListenError, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.acquireRelease(
      Effect.callback<dgram.Socket, TransportError.ListenError>((resume) => {
        const created = dgram.createSocket({ type: "udp4", reuseAddr: options.join !== undefined })
        created.once("error", (error) =>
          resume(
            Effect.fail(
              new TransportError.ListenError({
                address: `udp://${options.host}:${options.port}`,
                reason: "Other",
                detail: error.message,
              }),
            ),
          ),
        )
        created.bind(options.port, options.host, () => {
          created.removeAllListeners("error")
          created.on("error", () => {})
          if (options.multicastInterface !== undefined) {
            created.setMulticastInterface(options.multicastInterface)
            created.setMulticastLoopback(true)
            created.setMulticastTTL(1)
          }
          if (options.join !== undefined)
            created.addMembership(options.join.host, options.multicastInterface)
          resume(Effect.succeed(created))
        })
      }),
      (socket) => Effect.sync(() => socket.close()),
    )
    const flows = new Map<string, Queue.Queue<Message.Message, Cause.Done>>()
    const keys = new Map<string, Uint8Array>()
    const unclaimed = yield* Queue.sliding<{ from: Peer; datagram: Uint8Array }>(256)
    socket.on("message", (bytes, info) => {
      const from = { host: info.address, port: info.port }
      const datagram = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      const inbox = flows.get(key(from))
      if (inbox === undefined) {
        Queue.offerUnsafe(unclaimed, { from, datagram })
        return
      }
      const message = peek(datagram)
      if (message === undefined || !verify(keys.get(key(from))!, datagram)) return
      Queue.offerUnsafe(inbox, message)
    })
    const address = socket.address()
    const flow = (peer: Peer, secret: Uint8Array, sendTo?: Peer) =>
      Effect.gen(function* () {
        const inbox = yield* Queue.dropping<Message.Message, Cause.Done>(inboxMax)
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            flows.set(key(peer), inbox)
            keys.set(key(peer), secret)
          }),
          () =>
            Effect.sync(() => {
              if (flows.get(key(peer)) === inbox) {
                flows.delete(key(peer))
                keys.delete(key(peer))
              }
            }),
        )
        const target = sendTo ?? peer
        const send = (message: Message.Message) =>
          Effect.sync(() => {
            // A full socket buffer drops the datagram, as the network may: the sender
            // goes back to the acknowledgement.
            socket.send(seal(secret, message), target.port, target.host, () => {})
          })
        return {
          send,
          messages: Stream.fromQueue(inbox),
          close: Queue.end(inbox).pipe(Effect.asVoid),
        } satisfies Flow
      })
    return {
      address: { host: address.address, port: address.port },
      flow,
      unclaimed: Stream.fromQueue(unclaimed),
    } satisfies Socket
  })
