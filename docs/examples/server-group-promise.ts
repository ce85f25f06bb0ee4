/**
 * Staggered election guide, Promise style: the replicated counter of three servers, each
 * started with `createServer`, over loopback UDP and a name server. The most capable
 * server is elected; a write goes through it; it closes; a survivor takes over and still
 * has the write.
 */
import { Authentication } from "@understudy/machine"
import { createServer, type Server } from "@understudy/staggered-election"
import { MemoryStore, StoreServer } from "@understudy/store"
import { Address, ClusterKey, NodeTransport, type Observability } from "@understudy/transport"
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { freeUdpPorts } from "./support/ports.ts"

type Counter = Readonly<Record<string, number>>
type Add = { readonly key: string; readonly add: number }

/**
 * The name server is usually its own process (`server-group nameserver`); here it runs in
 * this one, on a free loopback port, until `stop` is called.
 */
const startNameServer = async () => {
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    StoreServer.serve(Address.tcp("127.0.0.1", 0)).pipe(
      Effect.provide(Layer.merge(MemoryStore.layer, NodeTransport.layer)),
      Scope.provide(scope),
    ),
  )
  return {
    address: Address.format(server.address),
    stop: () => Effect.runPromise(Scope.close(scope, Exit.void)),
  }
}

/** Asks each server's status (bounded: 6 s) until one is master and answers clients. */
const masterOf = async (group: ReadonlyArray<Server<Add, number, Counter>>) => {
  for (let attempt = 0; attempt < 300; attempt++) {
    for (const server of group) {
      const status = await server.status()
      if (status.role === "master" && status.serving && status.ready) return server
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error("no master within 6 s")
}

export const main = async () => {
  const nameServer = await startNameServer()
  const servers = [
    { id: "small", capacity: { cpu: 1, bandwidthMbps: 100 } },
    { id: "large", capacity: { cpu: 8, bandwidthMbps: 100 } },
    { id: "medium", capacity: { cpu: 4, bandwidthMbps: 100 } },
  ]
  const ports = await freeUdpPorts(servers.length)
  const addresses = Object.fromEntries(
    servers.map((server, index) => [server.id, `udp://127.0.0.1:${ports[index]}`]),
  )
  // Every server of a group shares one cluster key (in production, read from a 0600 file).
  const authentication = Authentication.keyed(ClusterKey.generate())
  // The servers' log lines, to your logger rather than the console: each one annotated with
  // the server's id (node) and group.
  const log: Array<Observability.LogEntry> = []
  const group: Array<Server<Add, number, Counter>> = []
  for (const { id } of servers) {
    group.push(
      await createServer<Counter, Add, number>({
        group: "counters",
        self: id,
        servers,
        addresses,
        store: nameServer.address,
        authentication,
        request: Schema.Struct({ key: Schema.String, add: Schema.Int }),
        initial: {},
        apply: (state, request) => {
          const value = (state[request.key] ?? 0) + request.add
          return [{ ...state, [request.key]: value }, value]
        },
        // Quick timings for the example; see the tuning page for what each one costs.
        detectionPeriod: "20 millis",
        inquiryTimeout: "100 millis",
        baseDelay: "50 millis",
        // A floor well above timer jitter: the survivors' delays differ by at least this, so
        // the most capable one declares first even on a loaded machine.
        floorDelay: "100 millis",
        logger: (entry) => log.push(entry),
      }),
    )
  }
  const first = await masterOf(group)
  const written = await first.submit({
    clientId: "docs",
    requestId: 1,
    request: { key: "hits", add: 5 },
  })
  await first.close()
  const survivors = group.filter((server) => server !== first)
  const second = await masterOf(survivors)
  const after = await second.submit({
    clientId: "docs",
    requestId: 2,
    request: { key: "hits", add: 1 },
  })
  const state = await second.read()
  for (const server of survivors) await server.close()
  await nameServer.stop()
  const declared = log
    .filter((entry) => entry.message.startsWith("declared master"))
    .map((entry) => entry.annotations.node)
  return { firstMaster: first.self, written, secondMaster: second.self, after, state, declared }
}

if (import.meta.main) {
  main().then((result) => console.log(result))
}
