/**
 * docs/staggered-election.md, "Three servers, one master": a replicated counter on three
 * servers in one process (loopback UDP, a memory name server). The most capable server is
 * elected; a write goes through it to all three; it stops; a survivor takes over after
 * its staggered delay and still has the write.
 */
import { Authentication } from "@understudy/machine"
import { ServerGroup } from "@understudy/staggered-election"
import { MemoryStore, NameServer } from "@understudy/store"
import { Address, ClusterKey, NodeDatagram } from "@understudy/transport"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { freeUdpPorts } from "./support/ports.ts"

type Counter = Readonly<Record<string, number>>
type Add = { readonly key: string; readonly add: number }
const apply = (state: Counter, request: Add) => {
  const value = (state[request.key] ?? 0) + request.add
  return [{ ...state, [request.key]: value }, value] as const
}

// Every server of a group shares one cluster key; a real deployment reads it from a file
// written once by `ClusterKey.generateFile` (mode 0600).
const authentication = Authentication.keyed(ClusterKey.generate())

const servers = [
  { id: "small", capacity: { cpu: 1, bandwidthMbps: 100 } },
  { id: "large", capacity: { cpu: 8, bandwidthMbps: 100 } },
  { id: "medium", capacity: { cpu: 4, bandwidthMbps: 100 } },
]

/** Polls (bounded) until one server is master and answers. */
const masterOf = (group: ReadonlyArray<ServerGroup.ServerGroup<Counter, Add, number>>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      for (const server of group) {
        const status = yield* server.status
        if (status.role === "master" && status.serving && status.ready) return server
      }
      yield* Effect.sleep(20)
    }
    return yield* Effect.die("no master within 6 s")
  })

export const program = Effect.gen(function* () {
  const ports = yield* Effect.promise(() => freeUdpPorts(servers.length))
  const addresses = Object.fromEntries(
    servers.map((s, i) => [s.id, Address.udp("127.0.0.1", ports[i]!)]),
  )
  const scopes = new Map<string, Scope.Closeable>()
  const group: Array<ServerGroup.ServerGroup<Counter, Add, number>> = []
  for (const { id } of servers) {
    const scope = yield* Scope.make()
    scopes.set(id, scope)
    group.push(
      yield* ServerGroup.make<Counter, Add, number>({
        group: "counters",
        self: id,
        servers,
        addresses,
        authentication,
        request: Schema.Struct({ key: Schema.String, add: Schema.Int }),
        initial: {},
        apply,
        detectionPeriod: "20 millis",
        inquiryTimeout: "100 millis",
        baseDelay: "50 millis",
        // A floor well above timer jitter: the survivors' delays differ by at least this, so
        // the most capable one declares first even on a loaded machine.
        floorDelay: "100 millis",
      }).pipe(Scope.provide(scope)),
    )
  }
  const first = yield* masterOf(group)
  const written = yield* first.submit({
    clientId: "docs",
    requestId: 1,
    request: { key: "hits", add: 5 },
  })
  // The master stops; the survivors detect it, wait their staggered delays, and the most
  // capable of them declares itself master.
  yield* Scope.close(scopes.get(first.self)!, Exit.void)
  const survivors = group.filter((server) => server !== first)
  const second = yield* masterOf(survivors)
  const after = yield* second.submit({
    clientId: "docs",
    requestId: 2,
    request: { key: "hits", add: 1 },
  })
  for (const scope of scopes.values()) yield* Scope.close(scope, Exit.void)
  return { firstMaster: first.self, written, secondMaster: second.self, after }
}).pipe(
  Effect.provide(
    NameServer.layer.pipe(Layer.provide(MemoryStore.layer), Layer.merge(NodeDatagram.layer)),
  ),
)

if (import.meta.main) {
  Effect.runPromise(program).then((result) => console.log(result))
}
