/**
 * A wire tap on one simulated host: every datagram its endpoint sends and receives,
 * decoded, with the (test) clock's time — to tell a DATA chunk sent twice from one sent once.
 */
import { Datagram, type SimNet } from "@understudy/transport"
import { Clock, Effect, Layer, Stream } from "effect"
import * as Packet from "../../src/Packet.ts"

/** One datagram seen on the tap. */
export interface Seen {
  readonly atMs: number
  readonly direction: "out" | "in"
  readonly packet: Packet.Packet
}

/** The DATA TSNs of `seen` in `direction`, in order (a TSN twice: sent twice). */
export const dataTsns = (
  seen: ReadonlyArray<Seen>,
  direction: Seen["direction"],
): Array<{ readonly tsn: number; readonly atMs: number }> =>
  seen
    .filter((entry) => entry.direction === direction)
    .flatMap((entry) =>
      entry.packet.chunks.flatMap((chunk) =>
        chunk._tag === "Data" ? [{ tsn: chunk.tsn, atMs: entry.atMs }] : [],
      ),
    )

/** The TSNs that appear more than once. */
export const repeated = (tsns: ReadonlyArray<{ readonly tsn: number }>): Array<number> => {
  const seen = new Set<number>()
  const twice = new Set<number>()
  for (const { tsn } of tsns) (seen.has(tsn) ? twice : seen).add(tsn)
  return [...twice]
}

/** `net`'s layer for `host`, its datagrams recorded in `seen`. */
export const tapped = (
  net: SimNet.SimNet,
  host: string,
  seen: Array<Seen>,
): Layer.Layer<Datagram.Datagram> =>
  Layer.effect(
    Datagram.Datagram,
    Effect.gen(function* () {
      const inner = yield* Datagram.Datagram
      const record = (direction: Seen["direction"], bytes: Uint8Array) =>
        Effect.flatMap(Clock.currentTimeMillis, (atMs) =>
          Effect.sync(() => {
            const decoded = Packet.decode(bytes)
            if (decoded._tag === "Success") seen.push({ atMs, direction, packet: decoded.success })
          }),
        )
      return Datagram.Datagram.of({
        bind: (address) =>
          Effect.map(inner.bind(address), (socket) => ({
            address: socket.address,
            send: (to, bytes) => Effect.andThen(record("out", bytes), socket.send(to, bytes)),
            messages: Stream.tap(socket.messages, (received) => record("in", received.bytes)),
          })),
      })
    }),
  ).pipe(Layer.provide(net.layer(host)))
