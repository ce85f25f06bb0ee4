/**
 * Machine guide, "Running a machine": two nodes run the heartbeat failure detector with the
 * `Runner`, on a simulated network (`SimNet`; `NodeDatagram.layer` gives real UDP). Node b's
 * host crashes; node a stops hearing its heartbeats and suspects it.
 */
import { randomBytes } from "node:crypto"
import { Authentication, FailureDetector, Runner } from "@understudy/machine"
import { Address, SimNet } from "@understudy/transport"
import { Deferred, Effect, Stream } from "effect"

export const program = Effect.gen(function* () {
  const net = yield* SimNet.make()
  const clusterKey = new Uint8Array(randomBytes(32))
  const nodes = ["a", "b"]
  const suspicion = yield* Deferred.make<string>()
  for (const self of nodes) {
    // Each node is a program on its own simulated host, with that host's Datagram service.
    yield* net.run(
      self,
      Effect.gen(function* () {
        const node = yield* Runner.run(FailureDetector.make({ intervalMs: 50, timeoutMs: 250 }), {
          self,
          peers: nodes,
          addresses: (node) => Address.udp(node, 7000),
          codec: FailureDetector.codec,
          authentication: Authentication.keyed(clusterKey),
        })
        yield* Stream.runForEach(node.events, (event) =>
          event._tag === "Suspected" && event.peer === "b"
            ? Deferred.succeed(suspicion, `${self} suspects ${event.peer}`)
            : Effect.void,
        )
      }),
    )
  }
  yield* Effect.sleep("200 millis")
  // Nothing is sent when a host crashes: a only notices the silence.
  yield* net.crash("b", { mode: "host" })
  return yield* Deferred.await(suspicion).pipe(Effect.timeout("5 seconds"))
}).pipe(Effect.scoped)

if (import.meta.main) {
  Effect.runPromise(program).then((line) => console.log(line))
}
