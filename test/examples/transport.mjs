// @understudy/transport: a round trip over SimNet, the in-memory network.
import { Address, Codec, SimNet, Transport } from "@understudy/transport"
import { Effect, Schema, Stream } from "effect"

const codec = Codec.json(Schema.String)

const program = Effect.gen(function* () {
  const net = yield* SimNet.make({ link: { latency: SimNet.fixed(1) } })
  const on = (host, effect) => Effect.provide(effect, net.layer(host))
  const listener = yield* on(
    "server",
    Effect.flatMap(Transport.Transport, (transport) =>
      transport.listen(Address.tcp("server", 7000), { codec }),
    ),
  )
  yield* Effect.forkScoped(
    Stream.runForEach(listener.connections, (connection) =>
      Effect.forkScoped(
        Stream.runForEach(connection.messages, (text) => connection.send(text.toUpperCase())),
      ),
    ),
  )
  const connection = yield* on(
    "client",
    Effect.flatMap(Transport.Transport, (transport) =>
      transport.connect(listener.address, { codec }),
    ),
  )
  yield* connection.send("hello")
  const [reply] = yield* Stream.runCollect(Stream.take(connection.messages, 1))
  return reply
}).pipe(Effect.scoped)

console.log(JSON.stringify({ reply: await Effect.runPromise(program) }))
