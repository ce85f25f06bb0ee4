/**
 * docs/transport.md, "A first connection", with Promises: the same echo server and client,
 * driven from async code. A `ManagedRuntime` holds the transport; each call runs one Effect
 * and gives back a Promise, and closing the scope closes the listener and the connection.
 */
import { Address, CloseReason, Codec, NodeTransport, Transport } from "@understudy/transport"
import { Effect, Exit, ManagedRuntime, Schema, Scope, Stream } from "effect"

const Greeting = Schema.Struct({ from: Schema.String, text: Schema.String })
const codec = Codec.json(Greeting)

export const main = async () => {
  const runtime = ManagedRuntime.make(NodeTransport.layer)
  const scope = Scope.makeUnsafe()
  const run = <A, E>(effect: Effect.Effect<A, E, Transport.Transport | Scope.Scope>) =>
    runtime.runPromise(Scope.provide(effect, scope))
  try {
    const listener = await run(
      Effect.flatMap(Transport.Transport, (transport) =>
        transport.listen(Address.tcp("127.0.0.1", 0), { codec }),
      ),
    )
    // The server, in the background until the scope closes: every connection's messages
    // are answered.
    await run(
      Effect.forkScoped(
        Stream.runForEach(listener.connections, (connection) =>
          Effect.forkScoped(
            Stream.runForEach(connection.messages, (message) =>
              connection.send({ from: "server", text: message.text.toUpperCase() }),
            ),
          ),
        ),
      ),
    )

    const client = await run(
      Effect.flatMap(Transport.Transport, (transport) =>
        transport.connect(listener.address, { codec }),
      ),
    )
    await run(client.send({ from: "client", text: "hello" }))
    const [reply] = await run(Stream.runCollect(Stream.take(client.messages, 1)))
    await run(client.close)
    const reason = await run(client.closed)
    return { reply, closed: CloseReason.describe(reason) }
  } finally {
    await runtime.runPromise(Scope.close(scope, Exit.void))
    await runtime.dispose()
  }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
