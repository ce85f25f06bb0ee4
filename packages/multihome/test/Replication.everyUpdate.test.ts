/**
 * every-update's promise, read off the wire: no SACK of the primary acknowledges DATA before
 * the secondary has acknowledged holding it. The cluster runs on SimNet (TestClock, seeded);
 * the peer streams faster than a replication round trip, so the primary steps new packets
 * while earlier updates still wait for the secondary (their outputs held by the endpoint):
 * the round trips overlap, and the promise must hold for every one of them.
 */
import { describe, expect, it } from "@effect/vitest"
import { Address, type Connection, Datagram, SimNet, Transport } from "@understudy/transport"
import { Effect, Fiber, Redacted, Stream } from "effect"
import * as Cluster from "../src/Cluster.ts"
import type * as Endpoint from "../src/Endpoint.ts"
import * as Packet from "../src/Packet.ts"
import type * as Replication from "../src/Replication.ts"
import { gt32, lte32 } from "../src/Serial.ts"
import { advance, connectPeer, payload, within } from "./support/endpoint-support.ts"

const primaryHost = "10.0.0.2"
const secondaryHost = "10.0.0.3"
const peerHost = "10.0.0.9"
const udpPort = 9899
const sctpPort = 7
const linkPort = 7000
const clusterKey = Redacted.make(new Uint8Array(32).fill(7))
const quick: Endpoint.AssociationOptions = {
  rtoInitial: 300,
  rtoMin: 100,
  rtoMax: 400,
  heartbeatInterval: 1_000,
}

/** What the test saw, in the order it happened (one JS thread runs every node). */
interface Watch {
  /** Per link message the primary shipped: its seq, and the highest ack it had then. */
  readonly shipped: Array<{ readonly seq: number; readonly acknowledged: number }>
  /** The primary's SACKs whose Cumulative TSN Ack went past what the secondary acknowledged. */
  readonly early: Array<{ readonly cumulativeTsnAck: number; readonly covered: number | undefined }>
  /** SACKs the primary sent after the first DATA reached the secondary. */
  sacksChecked: number
  /** Highest ack the primary received. */
  acknowledged: number
  /** Highest DATA TSN the secondary has acknowledged holding. */
  covered: number | undefined
  /** The first DATA TSN the secondary was sent (SACKs below it acknowledge no DATA). */
  firstTsn: number | undefined
  /** seq → the highest DATA TSN of that `Inputs` message, until the secondary acks it. */
  readonly pending: Map<number, number>
}

const dataTsns = (bytes: Uint8Array): Array<number> => {
  const decoded = Packet.decode(bytes)
  if (decoded._tag === "Failure") return []
  return decoded.success.chunks.flatMap((chunk) => (chunk._tag === "Data" ? [chunk.tsn] : []))
}

const maxTsn = (tsns: ReadonlyArray<number>): number | undefined =>
  tsns.reduce<number | undefined>(
    (highest, tsn) => (highest === undefined || gt32(tsn, highest) ? tsn : highest),
    undefined,
  )

/** The primary's socket, with every SACK checked against what the secondary acknowledged. */
const watchedDatagram = (watch: Watch, inner: Datagram.Datagram["Service"]) =>
  Datagram.Datagram.of({
    bind: (address) =>
      Effect.map(
        inner.bind(address),
        (socket): Datagram.Endpoint => ({
          ...socket,
          send: (to, bytes) => {
            const decoded = Packet.decode(bytes)
            if (decoded._tag === "Success" && watch.firstTsn !== undefined) {
              for (const chunk of decoded.success.chunks) {
                if (chunk._tag !== "Sack" || gt32(watch.firstTsn, chunk.cumulativeTsnAck)) continue
                watch.sacksChecked++
                if (watch.covered === undefined || gt32(chunk.cumulativeTsnAck, watch.covered)) {
                  watch.early.push({
                    cumulativeTsnAck: chunk.cumulativeTsnAck,
                    covered: watch.covered,
                  })
                }
              }
            }
            return socket.send(to, bytes)
          },
        }),
      ),
  })

/** A link connection seen through `onSend` / `onMessage`. */
const watchedConnection = <A>(
  connection: Connection.Connection<A>,
  onSend: (message: A) => void,
  onMessage: (message: A) => void,
): Connection.Connection<A> => ({
  ...connection,
  send: (message) =>
    Effect.andThen(
      Effect.sync(() => onSend(message)),
      connection.send(message),
    ),
  sendAll: (messages) =>
    Effect.andThen(
      Effect.sync(() => {
        for (const message of messages) onSend(message)
      }),
      connection.sendAll(messages),
    ),
  messages: Stream.map(connection.messages, (message) => {
    onMessage(message)
    return message
  }),
})

/** The primary's link: what it ships, and the acks it reads. */
const primaryTransport = (watch: Watch, inner: Transport.Transport["Service"]) =>
  Transport.Transport.of({
    listen: inner.listen,
    connect: (address, options) =>
      Effect.map(inner.connect(address, options), (connection) =>
        watchedConnection(
          connection,
          (message) => {
            const sent = message as Replication.Message
            if (sent._tag === "Inputs")
              watch.shipped.push({ seq: sent.seq, acknowledged: watch.acknowledged })
          },
          (message) => {
            const got = message as Replication.Message
            if (got._tag === "Ack") watch.acknowledged = Math.max(watch.acknowledged, got.seq)
          },
        ),
      ),
  })

/** The secondary's link: the DATA each message carries, covered once it is acknowledged. */
const secondaryTransport = (watch: Watch, inner: Transport.Transport["Service"]) =>
  Transport.Transport.of({
    connect: inner.connect,
    listen: (address, options) =>
      Effect.map(inner.listen(address, options), (listener) => ({
        ...listener,
        connections: Stream.map(listener.connections, (connection) =>
          watchedConnection(
            connection,
            (message) => {
              const sent = message as Replication.Message
              if (sent._tag !== "Ack") return
              for (const [seq, tsn] of watch.pending) {
                if (seq > sent.seq) continue
                if (watch.covered === undefined || gt32(tsn, watch.covered)) watch.covered = tsn
                watch.pending.delete(seq)
              }
            },
            (message) => {
              const got = message as Replication.Message
              if (got._tag !== "Inputs") return
              const tsns = got.inputs.flatMap((input) =>
                input._tag === "Receive" ? dataTsns(input.bytes) : [],
              )
              const highest = maxTsn(tsns)
              if (highest === undefined) return
              for (const tsn of tsns) {
                if (watch.firstTsn === undefined || lte32(tsn, watch.firstTsn)) watch.firstTsn = tsn
              }
              watch.pending.set(got.seq, highest)
            },
          ),
        ),
      })),
  })

const startNode = (net: SimNet.SimNet, watch: Watch, role: Cluster.Role) => {
  const host = role === "primary" ? primaryHost : secondaryHost
  return net.run(
    host,
    Effect.gen(function* () {
      const datagram = yield* Datagram.Datagram
      const transport = yield* Transport.Transport
      yield* Cluster.make({
        role,
        bind: Address.udp(host, udpPort),
        port: sctpPort,
        addresses: [primaryHost, secondaryHost],
        link: Address.tcp(secondaryHost, linkPort),
        policy: { _tag: "EveryUpdate" },
        config: quick,
        seed: role === "primary" ? 11 : 12,
        clusterKey,
      }).pipe(
        Effect.provideService(
          Datagram.Datagram,
          role === "primary" ? watchedDatagram(watch, datagram) : datagram,
        ),
        Effect.provideService(
          Transport.Transport,
          role === "primary"
            ? primaryTransport(watch, transport)
            : secondaryTransport(watch, transport),
        ),
      )
      return yield* Effect.never
    }),
  )
}

describe("every-update on the wire (SimNet)", () => {
  it.effect(
    "no SACK acknowledges DATA before the secondary acknowledged holding it, while the round trips overlap",
    () =>
      Effect.gen(function* () {
        // The link is slower than the peer's packets are apart: updates pile up behind it.
        const net = yield* SimNet.make({ link: { latency: SimNet.fixed(2) } })
        yield* net.setLink(primaryHost, secondaryHost, { latency: SimNet.fixed(8) })
        yield* net.setLink(secondaryHost, primaryHost, { latency: SimNet.fixed(8) })
        const watch: Watch = {
          shipped: [],
          early: [],
          sacksChecked: 0,
          acknowledged: 0,
          covered: undefined,
          firstTsn: undefined,
          pending: new Map(),
        }
        yield* startNode(net, watch, "secondary")
        yield* startNode(net, watch, "primary")
        yield* advance(300)
        const association = yield* connectPeer(net, peerHost, quick, {
          host: primaryHost,
          udpPort,
          port: sctpPort,
        })
        const count = 300
        const echoes = yield* Effect.forkScoped(
          association.messages.pipe(Stream.take(count), Stream.runCollect),
        )
        for (let index = 0; index < count; index++) {
          yield* association.send(0, 1, payload(index, 400))
          if (index % 10 === 9) yield* advance(1, 1)
        }
        const echoed = yield* within(60_000, Fiber.join(echoes))
        expect(echoed).toHaveLength(count)
        // The promise: every SACK past the first DATA was covered by the secondary's ack.
        expect(watch.sacksChecked).toBeGreaterThan(10)
        expect(watch.early).toEqual([])
        // And the round trips overlapped: updates shipped while an earlier one waited.
        const overlapping = watch.shipped.filter((ship) => ship.acknowledged < ship.seq - 1)
        expect(overlapping.length).toBeGreaterThan(0)
      }),
  )
})
