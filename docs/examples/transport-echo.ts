/**
 * docs/transport.md, "A first connection": an echo server and a client over TCP on
 * loopback, with typed messages and the close reason at the end.
 */
import { Address, CloseReason, Codec, NodeTransport, Transport } from "@understudy/transport"
import { Effect, Schema, Stream } from "effect"

const Greeting = Schema.Struct({ from: Schema.String, text: Schema.String })
const codec = Codec.json(Greeting)

export const program = Effect.gen(function* () {
  const transport = yield* Transport.Transport
  // Port 0: the OS picks a free port; the listener reports the one it got.
  const listener = yield* transport.listen(Address.tcp("127.0.0.1", 0), { codec })
  yield* Effect.forkScoped(
    Stream.runForEach(listener.connections, (connection) =>
      Effect.forkScoped(
        Stream.runForEach(connection.messages, (message) =>
          connection.send({ from: "server", text: message.text.toUpperCase() }),
        ),
      ),
    ),
  )

  const client = yield* transport.connect(listener.address, { codec })
  yield* client.send({ from: "client", text: "hello" })
  const [reply] = yield* Stream.runCollect(Stream.take(client.messages, 1))
  yield* client.close
  const reason = yield* client.closed
  return { reply, closed: CloseReason.describe(reason) }
}).pipe(Effect.scoped, Effect.provide(NodeTransport.layer))

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
