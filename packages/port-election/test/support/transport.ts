import {
  Address,
  type Connection,
  NodeTransport,
  Transport,
  TransportError,
} from "@understudy/transport"
import { Effect, Layer, Stream } from "effect"

/**
 * The Node transport, recording and with a switch: `connections` are those it opened or
 * accepted, and while `cut` is set it connects nowhere (as if the peer were unreachable).
 */
export const recording = (): {
  readonly control: { cut: boolean; readonly connections: Array<Connection.Connection<unknown>> }
  readonly connections: Array<Connection.Connection<unknown>>
  readonly layer: Layer.Layer<Transport.Transport>
} => {
  const connections: Array<Connection.Connection<unknown>> = []
  const control = { cut: false, connections }
  const layer = Layer.effect(
    Transport.Transport,
    Effect.gen(function* () {
      const transport = yield* Transport.Transport
      const record = <A>(connection: Connection.Connection<A>) => {
        connections.push(connection as Connection.Connection<unknown>)
        return connection
      }
      return Transport.Transport.of({
        listen: (at, options) =>
          Effect.map(transport.listen(at, options), (listener) => ({
            ...listener,
            connections: Stream.map(listener.connections, record),
          })),
        connect: (at, options) =>
          control.cut
            ? Effect.fail(
                new TransportError.ConnectError({
                  address: Address.format(at),
                  reason: "Unreachable",
                  detail: "cut off by the test",
                }),
              )
            : Effect.map(transport.connect(at, options), record),
      })
    }),
  ).pipe(Layer.provide(NodeTransport.layer))
  return { control, connections, layer }
}
